"""Prose follows the measurements: every measured-looking figure in a notebook's Markdown is backed.

A figure (a number with a unit of time, size, ratio, percentage or rate) in a Markdown cell of notebooks/ or
solutions/ must be one of (docs/ARCHITECTURE.md, "Figures in prose"):
- printed by a cell whose output nbval compares (not `# NBVAL_IGNORE_OUTPUT`): the same number followed by a unit
  of the same kind, or the same number anywhere in such an output when it is more than a single digit;
- listed for that notebook in tests/source_figures.py (the source's own figures, labelled 教科書 in the prose,
  and design constants).
A figure taken from a timing cell can never be backed: the next run prints another number.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from source_figures import SOURCE_FIGURES

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted([*ROOT.glob("notebooks/[0-9][0-9]_*.ipynb"), *ROOT.glob("solutions/[0-9][0-9]_*.ipynb")])

UNIT_KINDS = {
    "time": ("ms", "µs", "μs", "us", "ns", "秒", "s", "ミリ秒", "マイクロ秒"),
    "ratio": ("×", "倍", "x"),
    "percent": ("%", "％"),
    "size": ("MB", "KB", "kB", "GB", "MiB", "KiB", "GiB", "バイト", "B", "bytes"),
    "rate": ("req/s", "件/秒", "回/秒", "rows/s", "行/秒", "/s"),
}
_UNITS = sorted((u for units in UNIT_KINDS.values() for u in units), key=len, reverse=True)
_NUMBER = r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?"
# A unit right after a number; "×" followed by another number is a size or a product (224×224, 8 × 1,000).
FIGURE = re.compile(_NUMBER + r"\s?(" + "|".join(map(re.escape, _UNITS)) + r")(?![A-Za-z0-9])(?!\s?\d)")
NUMBER = re.compile(_NUMBER)
IGNORE_MARKER = "# NBVAL_IGNORE_OUTPUT"


def _kind(unit: str) -> str:
    """The kind of quantity a unit measures."""
    return next(kind for kind, units in UNIT_KINDS.items() if unit in units)


def _value(integer: str, fraction: str | None) -> str:
    """A number as one canonical string: no thousands separators, no trailing zeros after the point."""
    text = integer.replace(",", "") + ("." + fraction if fraction else "")
    return text.rstrip("0").rstrip(".") if "." in text else text


def figures(markdown: str) -> list[tuple[str, str, str]]:
    """The measured-looking figures of a Markdown text as (as written, canonical number, kind)."""
    return [(m.group(0), _value(m.group(1), m.group(2)), _kind(m.group(3))) for m in FIGURE.finditer(markdown)]


def _output_text(output: nbformat.NotebookNode) -> str:
    """The text of one output: stream text or the text/plain, text/markdown and text/html representations."""
    if "text" in output:
        return str(output["text"])
    data = output.get("data", {})
    return "\n".join(str(data[key]) for key in ("text/plain", "text/markdown", "text/html") if key in data)


def compared_outputs(notebook: nbformat.NotebookNode) -> str:
    """All output text of the code cells whose outputs nbval compares."""
    return "\n".join(
        _output_text(output)
        for cell in notebook.cells
        if cell.cell_type == "code"
        and not cell.source.lstrip().startswith(IGNORE_MARKER)
        and "nbval-ignore-output" not in cell.metadata.get("tags", [])
        for output in cell.get("outputs", [])
    )


def backing(outputs: str) -> tuple[set[tuple[str, str]], set[str]]:
    """The (number, kind) pairs and the bare numbers that the outputs print."""
    with_units = {(value, kind) for _, value, kind in figures(outputs)}
    numbers = {_value(m.group(1), m.group(2)) for m in NUMBER.finditer(outputs)}
    return with_units, numbers


def unbacked(notebook: nbformat.NotebookNode, stem: str) -> list[str]:
    """The figures of the notebook's Markdown that neither a compared output nor the source list backs."""
    with_units, numbers = backing(compared_outputs(notebook))
    listed = {(value, kind) for entry in SOURCE_FIGURES.get(stem, []) for _, value, kind in figures(entry)}
    problems = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "markdown":
            continue
        for written, value, kind in figures(cell.source):
            printed = (value, kind) in with_units or (len(value.replace(".", "")) > 1 and value in numbers)
            if not printed and (value, kind) not in listed:
                problems.append(f"cell {index}: {written!r}")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_figure_in_prose_is_printed_by_the_run_or_is_the_sources(path):
    problems = unbacked(nbformat.read(path, as_version=4), path.stem)
    assert not problems, (
        f"{path.relative_to(ROOT)}: figures in Markdown that no compared output prints and tests/source_figures.py "
        "does not list (render them from the run, make the prose qualitative, or label the source's figure): "
        + ", ".join(problems)
    )


def test_source_figures_name_existing_notebooks():
    stems = {p.stem for p in NOTEBOOKS}
    assert set(SOURCE_FIGURES) <= stems, sorted(set(SOURCE_FIGURES) - stems)
    for stem, entries in SOURCE_FIGURES.items():
        for entry in entries:
            assert figures(entry), f"{stem}: {entry!r} holds no figure the prose test would recognise"


# The rule's own checks: each wrong way of backing a figure must be caught.


def _notebook(markdown: str, code: str = "print('x')", output: str = "", ignored: bool = False):
    cell = nbformat.v4.new_code_cell(("# NBVAL_IGNORE_OUTPUT\n" if ignored else "") + code)
    cell.outputs = [nbformat.v4.new_output("stream", text=output)] if output else []
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(markdown), cell])


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("p99 は 207 ms、約 36× です", [("207 ms", "207", "time"), ("36×", "36", "ratio")]),
        (
            "1,234.50 KB と 12 ％、3 倍",
            [("1,234.50 KB", "1234.5", "size"), ("12 ％", "12", "percent"), ("3 倍", "3", "ratio")],
        ),
        ("画像は 224×224、8 × 1,000 リクエスト、ResNet-50、Python 3.11", []),
        ("83 req/s と 11 µs", [("83 req/s", "83", "rate"), ("11 µs", "11", "time")]),
    ],
)
def test_figures_are_recognised_and_sizes_are_not(markdown, expected):
    assert figures(markdown) == expected


def test_a_figure_printed_by_a_compared_cell_is_backed():
    assert unbacked(_notebook("中央値は 12.7 ms", output="p50: 12.70 ms\n"), "x") == []
    assert unbacked(_notebook("精度は 0.967", output="accuracy 0.967"), "x") == []


def test_a_figure_from_a_timing_cell_is_not_backed():
    assert unbacked(_notebook("中央値は 12.7 ms", output="p50: 12.7 ms\n", ignored=True), "x") == ["cell 0: '12.7 ms'"]


def test_a_typed_figure_that_the_run_does_not_print_is_not_backed():
    assert unbacked(_notebook("p99 は 207 ms で 36× 遅い", output="p99: 199.5 ms, 35.1×"), "x") == [
        "cell 0: '207 ms'",
        "cell 0: '36×'",
    ]


def test_a_single_digit_needs_its_unit_in_the_output():
    assert unbacked(_notebook("約 2 倍速い", output="threads: 2"), "x") == ["cell 0: '2 倍'"]
    assert unbacked(_notebook("約 2 倍速い", output="速度比: 2.0 倍"), "x") == []


def test_a_listed_source_figure_is_backed_only_in_its_own_notebook(monkeypatch):
    monkeypatch.setitem(SOURCE_FIGURES, "05_demo", ["平均 125 ms"])
    assert unbacked(_notebook("教科書の値: 平均 125 ms"), "05_demo") == []
    assert unbacked(_notebook("教科書の値: 平均 125 ms"), "04_demo") == ["cell 0: '125 ms'"]
