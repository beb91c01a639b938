"""Generate exercises/NN_*.ipynb from solutions/NN_*.ipynb (single source, nbgrader-style markers)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell

from course_lib.workspace import learner_changed, rescue

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
PLACEHOLDER = "# YOUR CODE HERE\nraise NotImplementedError()"
RAISES_TAG = "raises-exception"
HEADER_ID = "generated-header"
SUMMARY_ID = "progress-summary"
_BLOCK = re.compile(
    r"^(?P<indent>[ \t]*)" + re.escape(BEGIN) + r"[^\n]*\n.*?^[ \t]*" + re.escape(END) + r"[^\n]*(?P<eol>\n|$)",
    re.MULTILINE | re.DOTALL,
)
ROOT = Path(__file__).resolve().parents[2]


class MarkerError(ValueError):
    """A solution block that is nested, unclosed or closed without being opened."""


def check_markers(source: str, where: str = "cell") -> None:
    """Raise MarkerError naming the line of the first nested, unclosed or stray solution marker."""
    opened_at = None
    for number, line in enumerate(source.splitlines(), start=1):
        if BEGIN in line:
            if opened_at is not None:
                raise MarkerError(
                    f"{where}, line {number}: nested {BEGIN} (the block opened at line {opened_at} is not closed)"
                )
            opened_at = number
        elif END in line:
            if opened_at is None:
                raise MarkerError(f"{where}, line {number}: {END} without a {BEGIN} before it")
            opened_at = None
    if opened_at is not None:
        raise MarkerError(f"{where}, line {opened_at}: {BEGIN} is never closed by {END}")


def strip_solutions(source: str, where: str = "cell") -> tuple[str, bool]:
    """Replace each solution block with the placeholder; say whether one is at top level."""
    check_markers(source, where)
    top_level = False

    def replace(match: re.Match[str]) -> str:
        nonlocal top_level
        indent = match.group("indent")
        top_level = top_level or indent == ""
        return "\n".join(indent + line for line in PLACEHOLDER.splitlines()) + match.group("eol")

    return _BLOCK.sub(replace, source), top_level


def generated_header(solution_name: str) -> nbformat.NotebookNode:
    """The first cell of every exercise notebook: where to write answers, and where the exercise comes from."""
    cell = new_markdown_cell(
        f"> **答えを書く場所**: `make lab` が用意する作業フォルダーの `work/exercises/{solution_name}`"
        " に書いてください。作業フォルダーのファイルは、`make exercises`・`make test`・コースの更新のどれでも"
        "上書きされません。\n"
        f"> **自動生成ファイル**: 元の演習 `exercises/{solution_name}` は `solutions/{solution_name}` から"
        " `make exercises` で生成されます（直接編集しないでください）。"
    )
    cell.id = HEADER_ID
    return cell


def summary_cells() -> list[nbformat.NotebookNode]:
    """The last cells of every exercise notebook: this kernel's check results, as `progress` shows them."""
    heading = new_markdown_cell(
        "## 進み具合\n\nこのノートブックで実行したチェックの結果です"
        "（全ノートブックの一覧は、ターミナルで `.venv/bin/python -m course_lib progress`）。"
    )
    heading.id = SUMMARY_ID + "-heading"
    cell = new_code_cell("from course_lib.exercises import summary\n\nsummary()")
    cell.id = SUMMARY_ID
    return [heading, cell]


def exercise_notebook(solution: nbformat.NotebookNode, name: str) -> nbformat.NotebookNode:
    """Return the exercise version of a solution notebook: header added, answers removed, outputs cleared."""
    notebook = nbformat.from_dict(solution)
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        cell.source, raises = strip_solutions(cell.source, where=f"solutions/{name}, cell {index}")
        cell.outputs = []
        cell.execution_count = None
        cell.metadata.pop("execution", None)  # run timestamps of the solution: noise in every exercise diff
        tags = [t for t in cell.metadata.get("tags", []) if t != RAISES_TAG]
        if raises:
            tags.append(RAISES_TAG)
        if tags:
            cell.metadata["tags"] = tags
        else:
            cell.metadata.pop("tags", None)
    notebook.cells.insert(0, generated_header(name))
    notebook.cells.extend(summary_cells())
    return notebook


def _render(notebook: nbformat.NotebookNode) -> str:
    """Serialize a notebook the way this module writes it."""
    return nbformat.writes(notebook) + "\n"


def _exercise_text(source: Path) -> str:
    """The exercise notebook, as text, that the generator makes from one solution file."""
    return _render(exercise_notebook(nbformat.read(source, as_version=4), source.name))


def _pairs(solutions: Path, exercises: Path) -> list[tuple[Path, Path]]:
    """Each solution notebook with the exercise file it generates."""
    return [(path, exercises / path.name) for path in sorted(solutions.glob("[0-9][0-9]_*.ipynb"))]


def _orphans(solutions: Path, exercises: Path) -> list[Path]:
    """Exercise notebooks whose solution no longer exists."""
    expected = {target.name for _, target in _pairs(solutions, exercises)}
    return sorted(p for p in exercises.glob("*.ipynb") if p.name not in expected)


def build_exercises(
    solutions: Path = ROOT / "solutions", exercises: Path = ROOT / "exercises", workspace: Path | None = None
) -> tuple[list[Path], list[Path]]:
    """Write exercises/ from solutions/ and delete orphans; return the files written or deleted, and the answers
    rescued: a file a learner edited (it differs from its committed version) is first copied to the workspace."""
    exercises.mkdir(exist_ok=True)
    changed, rescued = [], []

    def keep_learners_work(path: Path) -> None:
        if learner_changed(path, exercises.parent):
            rescued.append(rescue(path, "exercises", workspace))

    for source, target in _pairs(solutions, exercises):
        text = _exercise_text(source)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            if target.exists():
                keep_learners_work(target)
            target.write_text(text, encoding="utf-8")
            changed.append(target)
    for orphan in _orphans(solutions, exercises):
        keep_learners_work(orphan)
        orphan.unlink()
        changed.append(orphan)
    return changed, rescued


def stale_exercises(solutions: Path = ROOT / "solutions", exercises: Path = ROOT / "exercises") -> list[str]:
    """Return the exercise files that differ from what build_exercises would write (or are orphans)."""
    stale = [
        target.name
        for source, target in _pairs(solutions, exercises)
        if not target.exists() or target.read_text(encoding="utf-8") != _exercise_text(source)
    ]
    return stale + [p.name for p in _orphans(solutions, exercises)]
