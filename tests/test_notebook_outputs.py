"""Committed outputs depend on the course only, not on the CPU: no compared output shows a sha256 or a raw float.

A model trained in a notebook differs in its last bits between CPUs (and BLAS builds, and thread counts), so its file's
sha256 differs completely and its outputs differ in their last digits. An output nbval compares (a cell without
`# NBVAL_IGNORE_OUTPUT`), after tests/nbval_sanitize.cfg's rewriting, must therefore hold no hash (nor a hash's prefix:
a run of 12 or more hex digits) and no decimal number with 6 or more significant digits: show whether a check passed,
round as a reader would (3 or 4 digits), or print a 12-digit hash prefix followed by "…", which the sanitizer masks.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from nbval.plugin import find_comment_markers, find_metadata_tags, get_sanitize_patterns

ROOT = Path(__file__).resolve().parent.parent
SANITIZE = ROOT / "tests" / "nbval_sanitize.cfg"
NOTEBOOKS = sorted(p for folder in ("notebooks", "solutions", "exercises") for p in (ROOT / folder).glob("*.ipynb"))

# A sha256 (64 hex digits), a prefix of one, or a random id: 12 or more hex digits, at least one of them a letter.
HEX_RUN = re.compile(r"(?<![0-9a-zA-Z])(?=[0-9]*[a-fA-F])[0-9a-fA-F]{12,}(?![0-9a-zA-Z])")
# A decimal number, not part of a version (2.14.1) or a word; its significant digits are counted below.
DECIMAL = re.compile(r"(?<![\w.])-?(\d+\.\d+)(?:[eE][-+]?\d+)?(?!\.?\d|\w)")
MAX_SIGNIFICANT_DIGITS = 5  # 80.858 (a published figure) passes; a float32 printed unrounded (-3.14671) does not


def sanitize_patterns(path: Path = SANITIZE) -> dict[str, str]:
    """The sanitizer's regex → replacement pairs, read and applied as nbval does (a later equal regex wins)."""
    return dict(get_sanitize_patterns(path.read_text(encoding="utf-8")))


def sanitized(text: str, patterns: dict[str, str]) -> str:
    """text as nbval compares it: each regex replaced in the file's order."""
    for regex, replacement in patterns.items():
        text = re.sub(regex, replacement, text)
    return text


def compared(cell: nbformat.NotebookNode) -> bool:
    """Whether nbval (run with --nbval) compares this code cell's outputs: markers and tags as nbval reads them."""
    options = defaultdict(bool, find_metadata_tags(cell.metadata))
    options.update(find_comment_markers(cell.source))
    return not options["skip"] and options.get("check", True)


def output_texts(cell: nbformat.NotebookNode) -> Iterator[str]:
    """Every text nbval compares in a cell's outputs: streams, results and errors' values (images are not compared)."""
    for output in cell.get("outputs", []):
        if "text" in output:
            yield output["text"]
        for key, value in output.get("data", {}).items():
            if not key.startswith("image/"):
                yield value if isinstance(value, str) else "".join(value)
        if output.get("output_type") == "error":
            yield output.get("evalue", "")


def unstable_figures(text: str) -> list[str]:
    """Hashes and long decimals in text: what differs between CPUs when it comes from a trained model."""
    found = HEX_RUN.findall(text)
    for match in DECIMAL.finditer(text):
        digits = match.group(1).replace(".", "").lstrip("0")
        if len(digits) > MAX_SIGNIFICANT_DIGITS:
            found.append(match.group())
    return found


def notebook_problems(notebook: nbformat.NotebookNode, patterns: dict[str, str]) -> list[str]:
    """'Cell N: figures' for each compared code cell whose sanitized outputs hold a hash or a long decimal."""
    problems = []
    for index, cell in enumerate(notebook.cells):  # nbval numbers cells among all cells
        if cell.cell_type != "code" or not compared(cell):
            continue
        figures = [figure for text in output_texts(cell) for figure in unstable_figures(sanitized(text, patterns))]
        if figures:
            problems.append(f"Cell {index}: {figures}")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_compared_output_prints_a_hash_or_a_raw_float(path):
    problems = notebook_problems(nbformat.read(path, as_version=4), sanitize_patterns())
    assert not problems, f"{path.name}: machine-dependent figures in compared outputs (see the docstring): {problems}"


SHA = "3a1c858a4761c940ce241e1c4b9c5e269571096128d6c03a51d5bd1d923374ab"


def one_cell(source: str, printed: str, tags: list[str] | None = None) -> nbformat.NotebookNode:
    """A notebook of one executed code cell that printed `printed`."""
    cell = nbformat.v4.new_code_cell(source, outputs=[nbformat.v4.new_output("stream", name="stdout", text=printed)])
    if tags:
        cell.metadata["tags"] = tags
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {SHA}"), cell])


@pytest.mark.parametrize(
    "printed",
    [
        f"expected sha256 {SHA}\n",
        f"{SHA.upper()}\n",
        f"model {SHA[:16]}\n",  # a prefix without the ellipsis the sanitizer looks for
        "probability 0.9666666666666667\n",
        "expected -16.5892, found -3.14671. The file\n",
        "logit -1.2345678e-05\n",
    ],
)
def test_the_check_finds_hashes_and_raw_floats_in_compared_outputs(printed):
    assert notebook_problems(one_cell("print(x)", printed), sanitize_patterns()) != []


@pytest.mark.parametrize(
    "source, printed, tags",
    [
        ("# NBVAL_IGNORE_OUTPUT\nprint(x)", f"sha256 {SHA}\n", None),  # the marker's cell is not compared
        ("print(x)", f"sha256 {SHA}\n", ["nbval-ignore-output"]),
        ("# NBVAL_SKIP\nprint(x)", f"sha256 {SHA}\n", None),
        ("print(x)", f"expected sha256 {SHA[:12]}…, found d5eb5d23afe2…\n", None),  # masked by the sanitizer
        ("print(x)", "expected -16.6, found -3.15; torch 2.14.1; 80.858%; 1e-05; 127.0.0.1\n", None),
    ],
)
def test_the_check_passes_what_nbval_ignores_masks_or_what_is_rounded(source, printed, tags):
    assert notebook_problems(one_cell(source, printed, tags), sanitize_patterns()) == []


def test_a_marker_that_is_not_alone_on_its_line_does_not_hide_a_hash():
    """nbval ignores `# NBVAL_IGNORE_OUTPUT ← why` (see docs/ARCHITECTURE.md), so the check must not trust it either."""
    assert notebook_problems(one_cell("# NBVAL_IGNORE_OUTPUT (timing)\nprint(x)", SHA), sanitize_patterns())


def test_a_hash_prefix_passes_only_through_the_sanitizer_rule():
    """The 12-digit prefixes notebook 08 prints are machine-dependent too: without the rule they would be compared."""
    printed = f"expected sha256 {SHA[:12]}…, found d5eb5d23afe2…"
    assert sanitized(printed, sanitize_patterns()) == "expected sha256 SHA256-PREFIX, found SHA256-PREFIX"
    without_rule = {regex: new for regex, new in sanitize_patterns().items() if new != "SHA256-PREFIX"}
    assert len(without_rule) == len(sanitize_patterns()) - 1
    assert notebook_problems(one_cell("print(x)", printed), without_rule) == [f"Cell 1: {[SHA[:12], 'd5eb5d23afe2']}"]
