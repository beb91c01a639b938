"""`progress` and `grade` run learners' notebooks in fresh kernels and read what the checks recorded."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import nbformat
import psutil
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from course_lib.exercises.grading import grade, write_reports
from course_lib.exercises.running import check_titles, restore_check_cells
from course_lib.workspace import ROOT

NAME = "00_setup.ipynb"
TITLES = ["演習 1: Flask の /echo", "演習 2: FastAPI の /add", "演習 3: ヘルスチェック関数"]
ADD_APP = (
    'app = FastAPI()\n\n    @app.get("/add")\n    def add(a: float, b: float) -> dict:\n'
    '        return {"sum": a + b}\n\n    return app'
)
ADD_APP_WITHOUT_TYPES = ADD_APP.replace("a: float, b: float", "a, b")  # the typical mistake: strings concatenated


def exercise_with(answers: dict[str, str], extra_cells: tuple[str, ...] = ()) -> nbformat.NotebookNode:
    """The course's exercise 00 with some answers written in (function name → body) and cells added at its end."""
    notebook = nbformat.read(ROOT / "exercises" / NAME, as_version=4)
    for function, body in answers.items():
        [cell] = [c for c in notebook.cells if c.cell_type == "code" and f"def {function}(" in c.source]
        cell.source = cell.source.replace("# YOUR CODE HERE\n    raise NotImplementedError()", body)
    notebook.cells += [new_code_cell(source) for source in extra_cells]
    return notebook


TROUBLE = "99_trouble.ipynb"  # no course notebook of that name: its own checks are expected, none is restored
STEPS = ["手順 1", "手順 2"]


def small(*sources: str) -> nbformat.NotebookNode:
    """A short notebook that runs check 1, then its trouble, then check 2."""
    head = "from course_lib.exercises import check"
    checks = [f'check("{STEPS[0]}", lambda: None)', *sources, f'check("{STEPS[1]}", lambda: None)']
    return new_notebook(cells=[new_code_cell(s) for s in (head, *checks)])


def save(folder: Path, learner: str, notebook: nbformat.NotebookNode | str, name: str = NAME) -> Path:
    """Write a learner's submission (a notebook, or raw text for a file that is not one)."""
    path = folder / learner / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(notebook, str):
        path.write_text(notebook, encoding="utf-8")
    else:
        nbformat.write(notebook, path)
    return path


@pytest.fixture(scope="module")
def leftover_pid_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pid") / "server.pid"


def graded(folder: Path, submissions: dict[str, nbformat.NotebookNode | str], timeout: float, name: str = NAME):
    """Grade the submissions; return the grades, the report files, and each original's path and bytes before."""
    originals = {learner: save(folder, learner, notebook, name) for learner, notebook in submissions.items()}
    before = {learner: path.read_bytes() for learner, path in originals.items()}
    grades = grade(folder, timeout=timeout, jobs=2)
    return grades, write_reports(grades, folder.with_name(folder.name + "-grades")), originals, before


@pytest.fixture(scope="module")
def class_run(tmp_path_factory, leftover_pid_file):
    """Three learners of exercise 00: the solution, the untouched exercise, and wrong answers that also leave a
    process running."""
    leave_a_server = (
        "import subprocess, sys\n"
        # its own session, as a daemonised server: the kernel's shutdown (a signal to its process group) misses it
        "server = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(3600)'], start_new_session=True)\n"
        f"open({str(leftover_pid_file)!r}, 'w').write(str(server.pid))"
    )
    wrong = exercise_with({"create_add_app": ADD_APP_WITHOUT_TYPES, "is_healthy": "return True"}, (leave_a_server,))
    submissions = {
        "alice": nbformat.read(ROOT / "solutions" / NAME, as_version=4),
        "bob": nbformat.read(ROOT / "exercises" / NAME, as_version=4),
        "carol": wrong,
    }
    return graded(tmp_path_factory.mktemp("class"), submissions, timeout=600)


@pytest.fixture(scope="module")
def trouble_run(tmp_path_factory):
    """Three short notebooks that go wrong: an infinite loop, a kernel that dies, a file that is not a notebook."""
    submissions = {
        "dave": small("while True:\n    pass"),
        "erin": small("import os\nos._exit(1)"),
        "frank": "this is not a notebook {",
    }
    return graded(tmp_path_factory.mktemp("trouble"), submissions, timeout=30, name=TROUBLE)


def test_solution_passes_and_untouched_exercise_is_not_started(class_run):
    grades, *_ = class_run
    assert grades.columns == [(NAME, title) for title in TITLES]
    assert [grades.cell("alice", NAME, t)[0] for t in TITLES] == ["pass"] * 3
    assert [grades.cell("bob", NAME, t)[0] for t in TITLES] == ["todo"] * 3


def test_wrong_answers_carry_the_checks_message_and_leftover_processes_are_stopped(class_run, leftover_pid_file):
    grades, *_ = class_run
    assert [grades.cell("carol", NAME, t)[0] for t in TITLES] == ["todo", "fail", "fail"]
    assert "float にしましたか" in grades.cell("carol", NAME, TITLES[1])[1]
    assert "404" in grades.cell("carol", NAME, TITLES[2])[1]
    run = grades.runs["carol"][NAME]
    assert run.status == "ok" and run.leftovers >= 1
    pid = int(leftover_pid_file.read_text())
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_a_hang_a_dead_kernel_and_a_broken_file_cost_only_that_notebook(trouble_run):
    grades, *_ = trouble_run
    hang, died, broken = (grades.runs[learner][TROUBLE] for learner in ("dave", "erin", "frank"))
    assert (hang.status, died.status, broken.status) == ("timeout", "died", "invalid")
    assert grades.columns == [(TROUBLE, step) for step in STEPS]
    for learner in ("dave", "erin"):  # the check before the trouble counts; the one after was never reached
        assert [grades.cell(learner, TROUBLE, s)[0] for s in STEPS] == ["pass", "missing"]
    assert "時間切れ" in grades.cell("dave", TROUBLE, STEPS[1])[1]
    assert "カーネルが止まりました" in grades.cell("erin", TROUBLE, STEPS[1])[1]
    assert [grades.cell("frank", TROUBLE, s)[0] for s in STEPS] == ["missing"] * 2


@pytest.mark.parametrize("run", ["class_run", "trouble_run"])
def test_originals_are_never_modified(run, request):
    _, _, originals, before = request.getfixturevalue(run)
    assert {learner: path.read_bytes() for learner, path in originals.items()} == before
    for path in originals.values():
        assert [p.name for p in path.parent.iterdir()] == [path.name], "nothing written beside them"


def test_reports_csv_and_html(class_run, trouble_run):
    wide, long, page, raw = class_run[1]
    rows = list(csv.DictReader(wide.open(encoding="utf-8")))
    assert [r["learner"] for r in rows] == ["alice", "bob", "carol"]
    assert [r[f"{NAME} | {TITLES[1]}"] for r in rows] == ["pass", "todo", "fail"]
    assert [r["passed"] for r in rows] == ["3", "0", "0"]
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html and "http" not in html, "self-contained: no script, no external resource"
    assert "演習ごとの合格率" in html and "1/3 (33%)" in html
    assert "float にしましたか" in html, "the class's typical mistakes are listed with the check's message"
    assert json.loads(raw.read_text(encoding="utf-8"))["alice"][0]["status"] == "ok"
    wide, long, page, _ = trouble_run[1]
    details = list(csv.DictReader(long.open(encoding="utf-8")))
    assert {r["notebook_status"] for r in details if r["learner"] == "frank"} == {"invalid"}
    html = page.read_text(encoding="utf-8")
    assert "時間切れ" in html and "カーネルが止まりました" in html and "ノートブックとして読めません" in html


def test_a_check_edited_to_pass_is_graded_as_the_course_wrote_it(tmp_path):
    notebook = exercise_with({})
    [cell] = [c for c in notebook.cells if c.cell_type == "code" and TITLES[0] in c.source]
    cell.source = f'check("{TITLES[0]}", lambda: None)  # the learner made the check pass'
    path = tmp_path / NAME
    nbformat.write(notebook, path)
    assert restore_check_cells(path) == 1
    restored = nbformat.read(path, as_version=4)
    assert any("checks_00.check_echo_app(create_echo_app)" in c.source for c in restored.cells)
    assert restore_check_cells(path) == 0


def test_check_titles_are_read_from_the_code_not_the_output():
    source = 'check("a", f)\nrun_checks({"b": g, "c": h})\nchecks_00.check("d", f)\nprint("check(\\"e\\")")'
    assert check_titles(source) == ["a", "b", "c", "d"]


def test_progress_command_runs_what_the_learner_changed(tmp_path):
    folder = tmp_path / "exercises"
    folder.mkdir()
    nbformat.write(exercise_with({"create_add_app": ADD_APP}), folder / NAME)
    untouched = "02_flask_inference_api.ipynb"
    (folder / untouched).write_bytes((ROOT / "exercises" / untouched).read_bytes())
    (folder / "00_setup.updated-0123abcd.ipynb").write_text("{}")  # a course version beside: not the learner's
    command = [sys.executable, "-m", "course_lib", "progress", str(folder)]
    text = subprocess.run(command, capture_output=True, text=True, timeout=600, check=True).stdout
    assert f"  ✅ {TITLES[1]}" in text and f"  ⏳ {TITLES[0]} — まだ実装されていません" in text
    assert "  ⏳ 演習 1: /model-info — まだ手をつけていません" in text
    assert "updated-" not in text
    assert text.rstrip().endswith("合計: ✅ 1 / ❌ 0 / ⏳ 5（6 問）")


def test_progress_json_lists_every_notebook_with_its_checks(tmp_path):
    untouched = "02_flask_inference_api.ipynb"
    (tmp_path / untouched).write_bytes((ROOT / "exercises" / untouched).read_bytes())
    command = [sys.executable, "-m", "course_lib", "progress", str(tmp_path), "--json"]
    runs = json.loads(subprocess.run(command, capture_output=True, text=True, timeout=600, check=True).stdout)
    assert [r["notebook"] for r in runs] == [untouched]
    assert [c["status"] for c in runs[0]["checks"]] == ["todo"] * 3


def test_progress_without_a_workspace_says_how_to_make_one(tmp_path):
    command = [sys.executable, "-m", "course_lib", "progress", str(tmp_path / "missing")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 2 and "make lab" in result.stderr
