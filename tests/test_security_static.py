"""Security review of the course code itself: loopback by default, no debugger, no silent unsafe loads.

The unsafe-load scan works on the syntax tree. It resolves import aliases (`import pickle as p`,
`from pickle import load`, `from torch import load as tload`), so a loader is found under any name, and it flags
every *reference* to a loader that runs code from the data (`pickle.load`, `joblib.load`, …), called or not
(`loader = pickle.load` counts). Loaders that are safe with the right argument are flagged only when called
without it: `torch.load` without a literal `weights_only=True`, `numpy.load` with `allow_pickle` other than a
literal False, `yaml.load` without a safe Loader.

Such a reference is accepted only inside a function whose own docstring says, affirmatively, that the input
must be trusted (`TRUST_PHRASES`): "only for files you trust", "only trusted files", "trusted files only",
"never load untrusted files". A docstring that merely mentions trust ("untrusted input", "trust me",
"not only trusted files") does not count, nor does the docstring of an outer function, class or module.
"""

from __future__ import annotations

import ast
import inspect
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import course_lib
from course_lib import servers

COURSE_LIB = Path(course_lib.__file__).resolve().parent
SCANNED = [COURSE_LIB, COURSE_LIB.parent / "bench"]

# Loaders that run code named by the data they read, whatever their arguments.
UNSAFE_LOADERS = {
    f"{module}.{name}"
    for module in ("pickle", "_pickle", "cloudpickle", "dill")
    for name in ("load", "loads", "Unpickler")
} | {
    "joblib.load",
    "pandas.read_pickle",
    "shelve.open",
    "shelve.DbfilenameShelf",
    "marshal.load",
    "marshal.loads",
    "yaml.unsafe_load",
    "yaml.unsafe_load_all",
}
UNSAFE_MODULES = {"pickle", "_pickle", "cloudpickle", "dill", "marshal", "shelve"}
SAFE_YAML_LOADERS = {"yaml.SafeLoader", "yaml.CSafeLoader", "yaml.BaseLoader", "yaml.CBaseLoader"}

_WORDS = r"(?:[a-z'-]+\s+){0,5}?"  # up to five words, within one sentence
TRUST_PHRASES = [
    re.compile(rf"(?<!not )\bonly\s+{_WORDS}(?<!not )trusted\b"),  # only trusted files · only for trusted input
    re.compile(r"\btrusted\s+(?:[a-z'-]+\s+){0,2}?only\b"),  # trusted files only
    re.compile(rf"(?<!not )\bonly\s+{_WORDS}(?:you|we)\s+(?:fully\s+)?trust\b"),  # only for files you trust
    re.compile(rf"\bnever\s+(?:load|open|unpickle|deseriali[sz]e|use|pass|read)\s+{_WORDS}untrusted\b"),
]


def says_input_must_be_trusted(docstring: str | None) -> bool:
    """True when the docstring states that only trusted input may be given (see TRUST_PHRASES)."""
    text = " ".join((docstring or "").lower().split())
    return any(phrase.search(text) for phrase in TRUST_PHRASES)


def _modules() -> list[Path]:
    """Every Python file of course_lib and bench."""
    return sorted(path for folder in SCANNED for path in folder.rglob("*.py"))


def _aliases(tree: ast.Module) -> dict[str, str]:
    """Local name → qualified name of every absolute import (`p` → `pickle`, `load` → `pickle.load`)."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    head = alias.name.split(".")[0]
                    names[head] = head
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                if alias.name != "*":
                    names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _qualified(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """`pickle.load` for a Name/Attribute chain that starts with an imported name, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or node.id not in aliases:
        return None
    return ".".join([aliases[node.id], *reversed(parts)])


def _argument(call: ast.Call, name: str, position: int | None = None) -> ast.AST | None:
    """The argument given as name=… (or at this position, when it may be positional), or None."""
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return call.args[position] if position is not None and len(call.args) > position else None


def _is_literal(node: ast.AST | None, value: object) -> bool:
    """True for a constant node holding exactly this value (True is not 1)."""
    return isinstance(node, ast.Constant) and type(node.value) is type(value) and node.value == value


def _torch_load(call: ast.Call, aliases: dict[str, str]) -> str | None:
    if _is_literal(_argument(call, "weights_only"), True):
        return None
    return "without a literal weights_only=True (a full unpickle runs code)"


def _numpy_load(call: ast.Call, aliases: dict[str, str]) -> str | None:
    allow = _argument(call, "allow_pickle", 2)
    if allow is None or _is_literal(allow, False):
        return None
    return "with allow_pickle other than False (object arrays are unpickled)"


def _yaml_load(call: ast.Call, aliases: dict[str, str]) -> str | None:
    loader = _argument(call, "Loader", 1)
    if loader is not None and _qualified(loader, aliases) in SAFE_YAML_LOADERS:
        return None
    return "without Loader=yaml.SafeLoader (other loaders build arbitrary Python objects)"


# Loaders that are safe with the right argument: qualified name → problem with this call, or None.
CONDITIONAL_LOADERS: dict[str, Callable[[ast.Call, dict[str, str]], str | None]] = {
    "torch.load": _torch_load,
    "torch.serialization.load": _torch_load,
    "numpy.load": _numpy_load,
    "yaml.load": _yaml_load,
    "yaml.load_all": _yaml_load,
}


def _with_context(tree: ast.Module) -> Iterator[tuple[ast.AST, ast.AST | None, ast.AST | None]]:
    """(node, its parent, the nearest enclosing function) for every node of the module."""

    def walk(node: ast.AST, function: ast.AST | None) -> Iterator[tuple[ast.AST, ast.AST | None, ast.AST | None]]:
        inner = node if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
        for child in ast.iter_child_nodes(node):
            yield child, node, inner
            yield from walk(child, inner)

    yield from walk(tree, None)


def _dynamic_import(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """The module name of `importlib.import_module("pickle")` or `__import__("pickle")`, if it is an unsafe one."""
    if not isinstance(node, ast.Call) or not node.args or not isinstance(node.args[0], ast.Constant):
        return None
    callee = _qualified(node.func, aliases) or (node.func.id if isinstance(node.func, ast.Name) else None)
    module = node.args[0].value
    if callee in {"importlib.import_module", "__import__"} and module in UNSAFE_MODULES:
        return module
    return None


def _load_problem(node: ast.AST, parent: ast.AST | None, aliases: dict[str, str]) -> str | None:
    """Why this node loads unsafely, or None."""
    if isinstance(node, ast.ImportFrom) and node.module in UNSAFE_MODULES and any(a.name == "*" for a in node.names):
        return f"`from {node.module} import *` hides its loaders from this scan"
    module = _dynamic_import(node, aliases)
    if module:
        return f"a dynamic import of {module} hides its loaders from this scan"
    if isinstance(node, ast.Call):
        name = _qualified(node.func, aliases)
        problem = CONDITIONAL_LOADERS[name](node, aliases) if name in CONDITIONAL_LOADERS else None
        return f"{name} {problem}" if problem else None
    if not isinstance(node, (ast.Name, ast.Attribute)) or isinstance(parent, ast.Attribute):
        return None  # only whole chains: `pickle.load`, not its part `pickle`
    name = _qualified(node, aliases)
    if name in UNSAFE_LOADERS:
        return f"{name} runs code from the data it loads"
    if name in CONDITIONAL_LOADERS and not (isinstance(parent, ast.Call) and parent.func is node):
        return f"{name} used without being called here, so its arguments cannot be checked"
    return None


def unsafe_load_findings(source: str, filename: str = "<source>") -> list[str]:
    """Unsafe loads outside a function whose docstring says its input must be trusted, as 'file:line: why'."""
    tree = ast.parse(source)
    aliases = _aliases(tree)
    findings = []
    for node, parent, function in _with_context(tree):
        problem = _load_problem(node, parent, aliases)
        if problem and not (function is not None and says_input_must_be_trusted(ast.get_docstring(function))):
            findings.append(
                f"{filename}:{node.lineno}: {problem}; the enclosing function's docstring must say "
                "its input must be trusted (e.g. 'only for files you trust')"
            )
    return findings


def debugger_findings(source: str, filename: str = "<source>") -> list[str]:
    """debug=True, use_debugger/use_reloader, or the address 0.0.0.0 anywhere in the code but as the operand of a
    comparison (a check that a learner's cluster config asks for it, exercise 07, binds nothing)."""
    tree = ast.parse(source)
    compared = {id(operand) for node in ast.walk(tree) if isinstance(node, ast.Compare) for operand in node.comparators}
    findings = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg in {"debug", "use_debugger", "use_reloader", "use_evalex"}:
            if isinstance(node.value, ast.Constant) and node.value.value is True:
                findings.append(f"{filename}:{node.value.lineno}: {node.arg}=True")
        if isinstance(node, ast.Constant) and node.value == "0.0.0.0" and id(node) not in compared:
            findings.append(f"{filename}:{node.lineno}: the address 0.0.0.0 in code")
    return findings


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(COURSE_LIB.parent)))
def test_no_unsafe_load_without_a_warning(path):
    assert unsafe_load_findings(path.read_text(encoding="utf-8"), path.name) == []


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(COURSE_LIB.parent)))
def test_no_debugger_and_no_all_interfaces_default(path):
    assert debugger_findings(path.read_text(encoding="utf-8"), path.name) == []


def test_the_scan_covers_the_modules_that_load_models():
    scanned = {path.relative_to(COURSE_LIB.parent).as_posix() for path in _modules()}
    assert {"course_lib/serialization/formats.py", "course_lib/apps/iris_fastapi.py", "bench/__main__.py"} <= scanned


def module(imports: str, body: str, doc: str | None = None) -> str:
    """Source of a module with these imports and one function f(x) running body (with this docstring, if any)."""
    docstring = f'    """{doc}"""\n' if doc else ""
    return f"{imports}\ndef f(x):\n{docstring}    {body}\n"


# One unsafe load each, on the line marked `# <-`: each must be flagged exactly there, once.
BAD = {
    "pickle.load, no docstring": module("import pickle", "return pickle.load(x)  # <-"),
    "pickle.loads": module("import pickle", "return pickle.loads(x)  # <-", "Load a model."),
    "docstring says untrusted": module(
        "import pickle", "return pickle.load(x)  # <-", "Load a model, even from untrusted files."
    ),
    "docstring says trust, not trusted-only": module("import pickle", "return pickle.load(x)  # <-", "Trust me."),
    "docstring says not only trusted": module(
        "import pickle", "return pickle.load(x)  # <-", "Works not only for trusted files."
    ),
    "docstring says untrusted files only": module(
        "import pickle", "return pickle.load(x)  # <-", "For untrusted files only."
    ),
    "from pickle import load": module("from pickle import load", "return load(x)  # <-", "Load a model."),
    "from pickle import loads as decode": module("from pickle import loads as decode", "return decode(x)  # <-"),
    "import pickle as p": module("import pickle as p", "return p.load(x)  # <-"),
    "import _pickle": module("import _pickle", "return _pickle.loads(x)  # <-"),
    "a loader passed on, not called": module("import pickle as p", "return list(map(p.loads, x))  # <-"),
    "a loader bound to a name": "import pickle\nLOADER = pickle.load  # <-\n",
    "pickle.Unpickler": module("import pickle", "return pickle.Unpickler(x).load()  # <-"),
    "Unpickler subclass": "import pickle\nclass Loose(pickle.Unpickler):  # <-\n    pass\n",
    "module-level call": '"""Only trusted files are loaded here."""\nimport pickle\n'
    'MODEL = pickle.load(open("m.pkl", "rb"))  # <-\n',
    "outer function trusts, inner does not": (
        'import pickle\ndef outer(x):\n    """Only for files you trust."""\n'
        "    def inner():\n        return pickle.load(x)  # <-\n"
        "    return inner\n"
    ),
    "joblib.load": module("import joblib", "return joblib.load(x)  # <-"),
    "from joblib import load": module("from joblib import load", "return load(x)  # <-"),
    "cloudpickle.loads": module("import cloudpickle", "return cloudpickle.loads(x)  # <-"),
    "pandas.read_pickle": module("import pandas as pd", "return pd.read_pickle(x)  # <-"),
    "shelve.open": module("import shelve", "return shelve.open(x)  # <-"),
    "marshal.loads": module("import marshal", "return marshal.loads(x)  # <-"),
    "torch.load without weights_only": module("import torch", "return torch.load(x)  # <-"),
    "torch.load weights_only=False": module("import torch", "return torch.load(x, weights_only=False)  # <-"),
    "torch.load weights_only=1": module("import torch", "return torch.load(x, weights_only=1)  # <-"),
    "torch.load weights_only from a name": module("import torch", "return torch.load(x, weights_only=SAFE)  # <-"),
    "from torch import load as tload": module("from torch import load as tload", "return tload(x)  # <-"),
    "torch.serialization.load": module("import torch.serialization", "return torch.serialization.load(x)  # <-"),
    "torch.load passed on": "import torch\nLOAD = torch.load  # <-\n",
    "numpy.load allow_pickle=True": module("import numpy as np", "return np.load(x, allow_pickle=True)  # <-"),
    "yaml.load without Loader": module("import yaml", "return yaml.load(x)  # <-"),
    "yaml.load Loader=yaml.Loader": module("import yaml", "return yaml.load(x, Loader=yaml.Loader)  # <-"),
    "yaml.load positional UnsafeLoader": module("import yaml", "return yaml.load(x, yaml.UnsafeLoader)  # <-"),
    "from yaml import load, FullLoader": module(
        "from yaml import load, FullLoader", "return load(x, FullLoader)  # <-"
    ),
    "yaml.unsafe_load": module("import yaml", "return yaml.unsafe_load(x)  # <-"),
    "star import from pickle": module("from pickle import *  # <-", "return load(x)"),
    "importlib.import_module('pickle')": module(
        "import importlib", "return importlib.import_module('pickle').loads(x)  # <-"
    ),
    "__import__('pickle')": module("", "return __import__('pickle').loads(x)  # <-"),
}

# The same loads written safely, or documented as trusted-only: none may be flagged.
GOOD = {
    "only for files you trust": module(
        "import pickle", "return pickle.load(x)", "Load a model; only for files you trust (unpickling runs code)."
    ),
    "only trusted files": module("from pickle import load", "return load(x)", "Unpickle. Pass only trusted files."),
    "trusted files only": module("import joblib", "return joblib.load(x)", "Load with joblib: trusted files only."),
    "never load untrusted": module("import pickle as p", "return p.loads(x)", "Never load untrusted bytes with this."),
    "loader passed on inside a trusting function": module(
        "import pickle", "return list(map(pickle.loads, x))", "Unpickle blobs we made; only for data we trust."
    ),
    "saving is not loading": module("import pickle, joblib", "return joblib.dump(x, 'm.joblib'), pickle.dumps(x)"),
    "an error class is not a loader": module("import pickle", "return pickle.UnpicklingError(x)"),
    "torch.load weights_only=True": module(
        "import torch", "return torch.load(x, map_location='cpu', weights_only=True)"
    ),
    "from torch import load, weights_only=True": module("from torch import load", "return load(x, weights_only=True)"),
    "numpy.load without pickles": module("import numpy as np", "return np.load(x), np.load(x, allow_pickle=False)"),
    "yaml.safe_load": module("import yaml", "return yaml.safe_load(x)"),
    "yaml.load SafeLoader": module("import yaml", "return yaml.load(x, Loader=yaml.SafeLoader)"),
    "yaml.load positional CSafeLoader": module("from yaml import load, CSafeLoader", "return load(x, CSafeLoader)"),
    "json.load": module("import json", "return json.load(x)"),
    "methods named load on a local object": module("", "return x.load('m'), x.pickle.load('m')"),
    "a local function named load": "def load(path):\n    return open(path).read()\n" + module("", "return load(x)"),
    "importlib of a safe module": module("import importlib", "return importlib.import_module('json').loads(x)"),
}


@pytest.mark.parametrize("name", BAD)
def test_the_scan_flags_each_unsafe_load(name):
    source = BAD[name]
    marked = [number for number, line in enumerate(source.splitlines(), 1) if line.endswith("# <-")]
    findings = unsafe_load_findings(source, "snippet.py")
    assert [finding.split(":")[1] for finding in findings] == [str(marked[0])], findings


@pytest.mark.parametrize("name", GOOD)
def test_the_scan_accepts_safe_or_documented_loads(name):
    assert unsafe_load_findings(GOOD[name]) == []


@pytest.mark.parametrize(
    "docstring",
    [
        "Only for files you trust.",
        "Load only trusted models.",
        "Use it only on input from a source you trust.",
        "Trusted files only.",
        "For trusted input only: unpickling runs code.",
        "Never load untrusted files with this.",
        "Load a pickle.\n\nOnly   for files\n   we trust.",
    ],
)
def test_affirmative_trust_statements(docstring):
    assert says_input_must_be_trusted(docstring)


@pytest.mark.parametrize(
    "docstring",
    [
        None,
        "",
        "Load a model.",
        "Handles untrusted input.",
        "Safe for untrusted files.",
        "Trust me.",
        "Do you trust the file?",
        "Not only trusted files.",
        "Untrusted files only.",
        "Only untrusted files.",
        "It never fails on untrusted input.",
        "Trusted or not, it loads.",
        "Use it only with files that are not trusted.",
    ],
)
def test_statements_that_do_not_restrict_input_to_trusted_files(docstring):
    assert not says_input_must_be_trusted(docstring)


def test_the_debugger_scan_catches_what_it_looks_for():
    bad = 'def run(app):\n    app.run(debug=True, host="0.0.0.0", use_reloader=True)\n'
    good = 'def run(app):\n    app.run(debug=False, host="127.0.0.1")\n'
    assert sorted(finding.split(": ", 1)[1] for finding in debugger_findings(bad)) == [
        "debug=True",
        "the address 0.0.0.0 in code",
        "use_reloader=True",
    ]
    assert debugger_findings(good) == []
    # comparing a value with the address binds nothing; binding, defaulting or returning it is found
    assert debugger_findings('def check(config):\n    assert config["host"] == "0.0.0.0"\n') == []
    for code in ('def serve(host="0.0.0.0"):\n    pass\n', 'HOST = "0.0.0.0"\n', 'config = {"host": "0.0.0.0"}\n'):
        assert [f.split(": ", 1)[1] for f in debugger_findings(code)] == ["the address 0.0.0.0 in code"], code


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
