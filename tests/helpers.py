"""Small helpers for the tests: resource counts for leak checks, the browser rule, a slowed eager model, and the
solutions notebooks' definitions run as a kernel runs them, and a figure drawn with missing glyphs as errors."""

from __future__ import annotations

import io
import linecache
import os
import threading
import time
import uuid
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import nbformat
import pytest
import torch

from course_lib.browser import HOW_TO_ENABLE

# Values of the CI variable that mean "not in CI"; any other non-empty value (true, 1, yes, a CI's name) means CI.
NOT_CI = {"", "0", "false", "no", "off"}


def running_in_ci(environ: Mapping[str, str]) -> bool:
    """True when the CI variable is set to anything but an empty or false-like value (case and spaces ignored)."""
    return environ.get("CI", "").strip().lower() not in NOT_CI


def require_chromium(chromium: str | None, environ: Mapping[str, str]) -> str:
    """The Chromium path; without one, fail in CI (the browser tests must run there) and skip elsewhere."""
    if chromium is not None:
        return chromium
    if running_in_ci(environ):
        pytest.fail(f"CI={environ['CI']!r} but " + HOW_TO_ENABLE, pytrace=False)
    pytest.skip(HOW_TO_ENABLE)


def open_fds() -> int:
    """Number of file descriptors this process has open (Linux/macOS)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        if os.path.isdir(folder):
            return len(os.listdir(folder))
    raise RuntimeError("cannot count file descriptors on this platform")


def settled_thread_count(baseline: int, timeout: float = 5.0) -> int:
    """Thread count once short-lived threads (request handlers) have finished, or after timeout."""
    deadline = time.monotonic() + timeout
    while threading.active_count() > baseline and time.monotonic() < deadline:
        time.sleep(0.05)
    return threading.active_count()


EAGER_EXTRA_S = 0.02


class SlowEager(torch.nn.Module):
    """The real network behind 20 ms of extra eager time; records torch's thread count at every call."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net
        self.threads_seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.threads_seen.append(torch.get_num_threads())
        time.sleep(EAGER_EXTRA_S)
        return self.net(x)


SOLUTIONS = Path(__file__).resolve().parents[1] / "solutions"


def notebook_cells(*sources: str, namespace: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run sources as IPython runs a notebook's cells: each compiled under a file name that linecache holds (where
    inspect.getsource finds a cell), in one namespace named __main__ whose In lists the cells run so far."""
    namespace = {"__name__": "__main__", "In": [""]} if namespace is None else namespace
    for source in sources:
        filename = f"<notebook cell {uuid.uuid4().hex}>"
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
        namespace["In"].append(source)
        # dont_inherit: the test module's `from __future__ import annotations` must not leak into the notebook
        exec(compile(source, filename, "exec", dont_inherit=True), namespace)  # noqa: S102 - the course's own cells
    return namespace


def solution_namespace(number: str, names: Sequence[str]) -> dict[str, Any]:
    """What solutions/<number>_*.ipynb defines: its code cells except the checks, run in the current directory up to
    the one that defines the last of names (later cells time things no test needs)."""
    (path,) = SOLUTIONS.glob(f"{number}_*.ipynb")
    namespace: dict[str, Any] = {"__name__": "__main__", "In": [""]}
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type == "code" and "check(" not in cell.source:
            notebook_cells(cell.source, namespace=namespace)
            if all(name in namespace for name in names):
                return namespace
    raise AssertionError(f"{path.name} does not define {', '.join(n for n in names if n not in namespace)}")


MISSING_GLYPH = r"Glyph .* missing from font"


def draw_strictly(fig: Any) -> None:
    """Render a matplotlib figure as the inline backend does, a glyph missing from the font raised as an error."""
    import matplotlib.pyplot as plt

    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=MISSING_GLYPH, category=UserWarning)
        fig.savefig(io.BytesIO(), format="png")  # glyphs are looked up when text is drawn, not when it is set
    plt.close(fig)
