"""Generate exercises/NN_*.ipynb from solutions/NN_*.ipynb (single source, nbgrader-style markers)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
RAISES_TAG = "raises-exception"
_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)" + re.escape(BEGIN) + r"[^\n]*\n.*?^[ \t]*" + re.escape(END) + r"[^\n]*(?P<eol>\n|$)",
    re.MULTILINE | re.DOTALL,
)
ROOT = Path(__file__).resolve().parents[2]


def strip_solutions(source: str) -> tuple[str, bool]:
    """Replace each solution block with `raise NotImplementedError()`; say whether one is at top level."""
    top_level = False

    def replace(match: re.Match[str]) -> str:
        nonlocal top_level
        indent = match.group("indent")
        top_level = top_level or indent == ""
        return f"{indent}raise NotImplementedError()" + match.group("eol")

    stripped = _BLOCK.sub(replace, source)
    if BEGIN in stripped or END in stripped:
        raise ValueError(f"unbalanced solution markers in cell:\n{source}")
    return stripped, top_level


def exercise_notebook(solution: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return the exercise version of a solution notebook: answers removed, outputs cleared."""
    notebook = nbformat.from_dict(solution)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        cell.source, raises = strip_solutions(cell.source)
        cell.outputs = []
        cell.execution_count = None
        tags = [t for t in cell.metadata.get("tags", []) if t != RAISES_TAG]
        if raises:
            tags.append(RAISES_TAG)
        if tags:
            cell.metadata["tags"] = tags
        else:
            cell.metadata.pop("tags", None)
    return notebook


def _render(notebook: nbformat.NotebookNode) -> str:
    """Serialize a notebook the way this module writes it."""
    return nbformat.writes(notebook) + "\n"


def _pairs(solutions: Path, exercises: Path) -> list[tuple[Path, Path]]:
    return [(path, exercises / path.name) for path in sorted(solutions.glob("[0-9][0-9]_*.ipynb"))]


def build_exercises(solutions: Path = ROOT / "solutions", exercises: Path = ROOT / "exercises") -> list[Path]:
    """Write exercises/ from solutions/ and return the files written."""
    exercises.mkdir(exist_ok=True)
    written = []
    for source, target in _pairs(solutions, exercises):
        text = _render(exercise_notebook(nbformat.read(source, as_version=4)))
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            written.append(target)
    return written


def stale_exercises(solutions: Path = ROOT / "solutions", exercises: Path = ROOT / "exercises") -> list[str]:
    """Return the exercise files that differ from what build_exercises would write (or are orphans)."""
    stale = []
    expected = set()
    for source, target in _pairs(solutions, exercises):
        expected.add(target.name)
        text = _render(exercise_notebook(nbformat.read(source, as_version=4)))
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            stale.append(target.name)
    stale += sorted(p.name for p in exercises.glob("*.ipynb") if p.name not in expected)
    return stale
