"""Security review of the course code itself: loopback by default, no debugger, no silent unsafe loads."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import course_lib
from course_lib import servers

COURSE_LIB = Path(course_lib.__file__).resolve().parent
UNSAFE_LOADERS = {("pickle", "load"), ("pickle", "loads"), ("joblib", "load"), ("cloudpickle", "load")}


def _modules() -> list[Path]:
    """Every Python file of course_lib."""
    return sorted(COURSE_LIB.rglob("*.py"))


def _dotted(node: ast.AST) -> tuple[str, ...]:
    """`a.b.c` of a Name/Attribute chain, or () for anything else."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return tuple(reversed(parts))
    return ()


def _calls_with_function(tree: ast.Module):
    """(call, enclosing function or None) for every call in the module."""
    def walk(node: ast.AST, function):
        for child in ast.iter_child_nodes(node):
            inner = child if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Call):
                yield child, function
            yield from walk(child, inner)
    yield from walk(tree, None)


def unsafe_load_findings(source: str, filename: str = "<source>") -> list[str]:
    """Calls that unpickle or load torch files unsafely, without the enclosing docstring saying so."""
    findings = []
    for call, function in _calls_with_function(ast.parse(source)):
        name = _dotted(call.func)
        where = f"{filename}:{call.lineno}"
        doc = (ast.get_docstring(function) or "") if function else ""
        if name[-2:] in UNSAFE_LOADERS or name[-1:] == ("Unpickler",):
            if "trust" not in doc.lower():
                findings.append(f"{where}: {'.'.join(name)} in a function whose docstring does not warn about trust")
        if name[-2:] == ("torch", "load"):
            keywords = {k.arg: k.value for k in call.keywords}
            value = keywords.get("weights_only")
            safe = isinstance(value, ast.Constant) and value.value is True
            if not safe and "trust" not in doc.lower():
                findings.append(f"{where}: torch.load without weights_only=True and no warning in the docstring")
    return findings


def debugger_findings(source: str, filename: str = "<source>") -> list[str]:
    """debug=True, use_debugger/use_reloader, or a 0.0.0.0 default anywhere in the code."""
    findings = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.keyword) and node.arg in {"debug", "use_debugger", "use_reloader", "use_evalex"}:
            if isinstance(node.value, ast.Constant) and node.value.value is True:
                findings.append(f"{filename}:{node.value.lineno}: {node.arg}=True")
        if isinstance(node, ast.Constant) and node.value == "0.0.0.0":
            findings.append(f"{filename}:{node.lineno}: the address 0.0.0.0 in code")
    return findings


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(COURSE_LIB)))
def test_no_unsafe_load_without_a_warning(path):
    assert unsafe_load_findings(path.read_text(encoding="utf-8"), path.name) == []


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(COURSE_LIB)))
def test_no_debugger_and_no_all_interfaces_default(path):
    assert debugger_findings(path.read_text(encoding="utf-8"), path.name) == []


def test_the_scanners_catch_what_they_look_for():
    bad = '''
import pickle, torch
def load(path):
    """Load a model."""
    return pickle.load(open(path, "rb")), torch.load(path), torch.load(path, weights_only=False)
def run(app):
    app.run(debug=True, host="0.0.0.0")
'''
    good = '''
import pickle, torch
def load(path):
    """Load a model; only for files you trust (unpickling runs code)."""
    return pickle.load(open(path, "rb"))
def weights(path):
    """Load a state dict."""
    return torch.load(path, weights_only=True)
'''
    assert len(unsafe_load_findings(bad)) == 3
    assert len(debugger_findings(bad)) == 2
    assert unsafe_load_findings(good) == [] and debugger_findings(good) == []


def test_servers_bind_loopback_unless_told_otherwise():
    assert inspect.signature(servers.serve).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(servers.bind_socket).parameters["host"].default == "127.0.0.1"
    with servers.serve(_tiny_flask_app()) as srv:
        assert srv.host == "127.0.0.1" and srv.url.startswith("http://127.0.0.1:")


def _tiny_flask_app():
    """A one-route Flask app."""
    import flask

    app = flask.Flask("tiny")
    app.get("/")(lambda: "ok")
    return app
