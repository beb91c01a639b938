"""The source chapter's programs appear in a lesson as the source wrote them, with only the listed changes.

`tests/source_listings/` keeps each program the course quotes, re-indented (the source's print lost indentation) and
otherwise as printed, under a two-line header naming its section. A lesson cell must contain it line for line after
whitespace normalisation; the changes a lesson makes on purpose (a file path, an `app.run` a notebook cannot run) are
listed here, each one a line of the source and what the cell has instead.
"""

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LISTINGS = Path(__file__).resolve().parent / "source_listings"

# listing → (the lesson that shows it, {the source's line: the cell's line or lines}), whitespace-normalised
QUOTED: dict[str, tuple[str, dict[str, str]]] = {
    "app.py": (
        "notebooks/02_flask_inference_api.ipynb",
        {
            "if __name__ == '__main__':": "# if __name__ == '__main__':",
            "app.run(debug=True, host='0.0.0.0', port=5000)": "# app.run(debug=True, host='0.0.0.0', port=5000)",
        },
    ),
    "train_model.py": (
        "notebooks/02_flask_inference_api.ipynb",
        {
            "joblib.dump(model, 'iris_model.pkl')": "joblib.dump(model, model_path)",
            'print("モデル保存完了: iris_model.pkl")': 'print(f"モデル保存完了: {model_path}")',
        },
    ),
    "flask_app.py": (
        "notebooks/02_flask_inference_api.ipynb",
        {
            "model = joblib.load('iris_model.pkl')": "model = joblib.load(model_path)",
            "if __name__ == '__main__':": "# if __name__ == '__main__':",
            "app.run(debug=True, host='0.0.0.0', port=5000)": "# app.run(debug=True, host='0.0.0.0', port=5000)",
        },
    ),
    "serialization_comparison.py": ("notebooks/04_model_serialization.ipynb", {}),
    "onnx_export.py": ("notebooks/04_model_serialization.ipynb", {}),
    "torchscript_export.py": ("notebooks/04_model_serialization.ipynb", {}),
    "models.py": ("notebooks/03_fastapi_inference_api.ipynb", {}),
    "fastapi_pytorch.py": ("notebooks/03_fastapi_inference_api.ipynb", {}),
    "image_classification_api.py": (
        "notebooks/05_image_classification_api.ipynb",
        {
            "model = resnet50(weights=weights)": (
                "from course_lib.vision import benchmark_resnet50 # このコースの変更（上の表）\n"
                "model = benchmark_resnet50().model"
            ),
        },
    ),
    "base64_image_api.py": (
        "notebooks/05_image_classification_api.ipynb",
        {
            "model = resnet50(weights=weights)": (
                "from course_lib.vision import benchmark_resnet50 # このコースの変更（上の表）\n"
                "model = benchmark_resnet50().model"
            ),
        },
    ),
    "benchmark.py": (
        "notebooks/05_image_classification_api.ipynb",
        {'API_URL = "http://localhost:8000/predict"': 'API_URL = resnet_api.url + "/predict"'},
    ),
    "error_handling.py": (
        "notebooks/02_flask_inference_api.ipynb",
        {
            "model = joblib.load('iris_model.pkl')": "model = joblib.load(model_path)",
            "if __name__ == '__main__':": "# if __name__ == '__main__':",
            "app.run(debug=False, host='0.0.0.0', port=5000)": "# app.run(debug=False, host='0.0.0.0', port=5000)",
        },
    ),
}


def normalised(text: str) -> list[str]:
    """Non-blank lines with leading/trailing whitespace removed and inner runs of whitespace made one space."""
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def listing_lines(name: str) -> list[str]:
    """The listing's normalised lines without its two-line header."""
    text = (LISTINGS / name).read_text(encoding="utf-8")
    header, _, body = text.partition("\n")
    assert header.startswith("# Source: "), f"{name}: the first line names the source's section"
    return normalised(body.partition("\n")[2])


def with_changes(lines: list[str], changes: dict[str, str]) -> list[str]:
    """The listing as the lesson should show it: each listed line replaced, every change used exactly once."""
    for old in changes:
        assert lines.count(old) == 1, f"the change for {old!r} does not match exactly one line of the listing"
    return [new for line in lines for new in changes.get(line, line).split("\n")]


def contains_run(cell: list[str], expected: list[str]) -> bool:
    """True when expected appears in cell as consecutive lines."""
    return any(cell[i : i + len(expected)] == expected for i in range(len(cell) - len(expected) + 1))


def code_cells(notebook: str) -> list[list[str]]:
    cells = json.loads((ROOT / notebook).read_text(encoding="utf-8"))["cells"]
    return [normalised("".join(cell["source"])) for cell in cells if cell["cell_type"] == "code"]


def test_every_listing_is_quoted_somewhere():
    assert sorted(path.name for path in LISTINGS.iterdir() if path.suffix == ".py") == sorted(QUOTED)


@pytest.mark.parametrize("name", sorted(QUOTED))
def test_a_lesson_cell_shows_the_listing_as_written(name):
    notebook, changes = QUOTED[name]
    expected = with_changes(listing_lines(name), changes)
    assert any(contains_run(cell, expected) for cell in code_cells(notebook)), (
        f"no code cell of {notebook} shows {name} as the source wrote it (with only the listed changes)"
    )


@pytest.mark.parametrize("name", sorted(QUOTED))
def test_a_cell_with_one_more_change_does_not_match(name):
    notebook, changes = QUOTED[name]
    expected = with_changes(listing_lines(name), changes)
    for cell in code_cells(notebook):
        if contains_run(cell, expected):
            start = next(i for i in range(len(cell)) if cell[i : i + len(expected)] == expected)
            for offset in (0, len(expected) // 2, len(expected) - 1):  # first, middle and last line edited
                edited = cell.copy()
                edited[start + offset] += "  # edited"
                assert not contains_run(edited, expected)
            edited = cell[: start + 1] + cell[start + 2 :]  # a line dropped
            assert not contains_run(edited, expected)
