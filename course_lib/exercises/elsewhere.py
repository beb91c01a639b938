"""A learner's function called in a new Python process that loads the learner's code itself, as each worker of a real
server does: the notebook cells that define the function run again there, so state a cell creates when it runs (a
random salt, a dict of remembered choices) is created anew, instead of travelling with a pickled copy of the function.

The cells come from where IPython keeps them: the function's own cell from linecache (the source inspect.getsource
reads), the cells that define the other names it uses from the notebook's input history `In`. What no cell defines
(modules, library functions, values whose cell is unknown) is sent as it is, with cloudpickle. A function without a
cell (defined in a module file, a lambda in a test module) is sent with cloudpickle: by reference when its module can
be imported there, else by value.
"""

from __future__ import annotations

import builtins
import json
import linecache
import os
import subprocess
import symtable
import sys
import tempfile
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cloudpickle

from course_lib.exercises.checking import RECORD_ENV

INSIDE = "COURSE_EXERCISE_OTHER_PROCESS"  # set in the new process: a check that a cell calls there does nothing
MODULE = "learner_code"
SUBPROCESS_LIMIT_S = 120  # only against a hang: the other process answers in a second or two
_PROGRAM = """
import contextlib, importlib.util, json, sys
import cloudpickle

request = cloudpickle.loads(sys.stdin.buffer.read())
with contextlib.redirect_stdout(sys.stderr):  # what the cells print is not the answer
    if request["path"] is None:
        function = request["function"]
    else:
        spec = importlib.util.spec_from_file_location(request["module"], request["path"])
        module = importlib.util.module_from_spec(spec)
        module.__dict__.update(request["names"])
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        function = getattr(module, request["name"])
    answers = [str(function(*args)) for args in request["calls"]]
print("\\n" + json.dumps(answers))
"""


@dataclass(frozen=True)
class LearnerCode:
    """The notebook cells that define a function, in the order they ran, and what they use from elsewhere."""

    source: str
    name: str  # the function's name in the cells
    names: dict[str, Any]  # modules, library objects and values no cell defines


def inside_other_process() -> bool:
    """Whether this process is one that call_in_new_process started (a check there must not start more)."""
    return os.environ.get(INSIDE) == "1"


@lru_cache(maxsize=256)
def _names_of(source: str) -> tuple[frozenset[str], frozenset[str]]:
    """(names the code binds at its top level, global names it uses anywhere); nothing for code that does not
    compile (a cell IPython ran with its own syntax)."""
    try:
        top = symtable.symtable(source, "<cell>", "exec")
    except SyntaxError:
        return frozenset(), frozenset()
    bound = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported() or s.is_namespace()}
    used: set[str] = set()
    tables = [top]
    while tables:
        table = tables.pop()
        module_level = table.get_type() == "module"
        used |= {s.get_name() for s in table.get_symbols() if s.is_referenced() and (module_level or s.is_global())}
        tables.extend(table.get_children())
    return frozenset(bound), frozenset(used - bound - set(dir(builtins)))


def _compiles(source: str) -> bool:
    """Whether source is plain Python that another process can run."""
    try:
        compile(source, "<cell>", "exec", dont_inherit=True)
    except SyntaxError:
        return False
    return True


def _sent_as_is(value: Any) -> bool:
    """Modules and objects of importable modules: no notebook cell to run again, cloudpickle sends them."""
    if isinstance(value, types.ModuleType):
        return True
    module = getattr(value, "__module__", None)
    return callable(value) and module not in (None, "__main__") and module in sys.modules


def learner_code(function: Callable[..., Any]) -> LearnerCode | None:
    """The cells that define function and the names they use, or None when function has no notebook cell."""
    namespace = getattr(function, "__globals__", None)
    if getattr(function, "__module__", None) != "__main__" or namespace is None:
        return None
    name = next((key for key, value in namespace.items() if value is function and not key.startswith("_")), None)
    own = "".join(linecache.getlines(function.__code__.co_filename))
    history = [cell for cell in namespace.get("In", []) if isinstance(cell, str)]
    if name is None or not own or not _compiles(own):
        return None
    own_index = max((i for i, cell in enumerate(history) if cell == own), default=len(history))
    cells = {own_index: own}
    names: dict[str, Any] = {}
    pending = sorted(_names_of(own)[1])
    while pending:
        wanted = pending.pop()
        if wanted in names or wanted not in namespace or any(wanted in _names_of(c)[0] for c in cells.values()):
            continue
        value = namespace[wanted]
        defining = [i for i, cell in enumerate(history) if i not in cells and wanted in _names_of(cell)[0]]
        if _sent_as_is(value) or not defining:
            names[wanted] = value
            continue
        cells[defining[-1]] = history[defining[-1]]  # the last cell that bound it made the value the function sees
        pending.extend(sorted(_names_of(history[defining[-1]])[1]))
    return LearnerCode("\n".join(cells[i] for i in sorted(cells)), name, names)


def _environment(hash_seed: str) -> dict[str, str]:
    """This process's environment with the hash seed, the marker, and no record file: a check that a cell runs there
    must not write a result into the record a course tool reads (course_lib.exercises.checking)."""
    environment = {key: value for key, value in os.environ.items() if key != RECORD_ENV}
    return {**environment, "PYTHONHASHSEED": hash_seed, INSIDE: "1"}


def call_in_new_process(
    function: Callable[..., Any], calls: Sequence[tuple[Any, ...]], hash_seed: str, code: LearnerCode | None
) -> list[str]:
    """str(function(*args)) for each call, computed by a new Python process with this PYTHONHASHSEED that runs the
    learner's cells (code) itself, or, without code, loads the function sent with cloudpickle."""
    with tempfile.TemporaryDirectory(prefix="course-learner-") as tmp:
        request: dict[str, Any] = {"calls": list(calls), "path": None, "module": MODULE}
        if code is None:
            request["function"] = function
        else:
            path = Path(tmp) / f"{MODULE}.py"
            path.write_text(code.source, encoding="utf-8")
            request.update(path=str(path), name=code.name, names=code.names)
        try:
            payload = cloudpickle.dumps(request)
        except Exception as error:  # noqa: BLE001 - anything that cannot travel to another process
            raise AssertionError(
                f"{getattr(function, '__name__', '関数')} を別のプロセスに送れませんでした（{type(error).__name__}:"
                f" {error}）。ロックやファイルのような、プロセスをまたげないものを使わないでください"
            ) from None
        done = subprocess.run(
            [sys.executable, "-c", _PROGRAM],
            input=payload,
            capture_output=True,
            env=_environment(hash_seed),
            timeout=SUBPROCESS_LIMIT_S,
            check=False,
        )
    if done.returncode != 0:
        last = (done.stderr.decode(errors="replace").strip().splitlines() or ["(no message)"])[-1]
        raise AssertionError(f"別のプロセスで {getattr(function, '__name__', '関数')} を呼ぶと失敗しました: {last}")
    return json.loads(done.stdout.decode().strip().splitlines()[-1])
