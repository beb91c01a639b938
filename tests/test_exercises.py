"""The exercise pipeline: generator rules, committed exercises in sync, checks that really fail."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from course_lib.exercises import checking
from course_lib.exercises.build import (
    HEADER_ID,
    RAISES_TAG,
    ROOT,
    SUMMARY_ID,
    MarkerError,
    build_exercises,
    exercise_notebook,
    stale_exercises,
    strip_solutions,
)
from course_lib.exercises.checking import RECORD_ENV, check, run_checks, summary

SOLUTION_IN_FUNCTION = '''def double(x: int) -> int:
    """Return 2x."""
    ### BEGIN SOLUTION
    y = x * 2
    return y
    ### END SOLUTION

print(double)'''


def test_block_inside_a_function_becomes_an_indented_raise():
    source, top_level = strip_solutions(SOLUTION_IN_FUNCTION)
    assert "    # YOUR CODE HERE\n    raise NotImplementedError()\n\nprint(double)" in source
    assert "x * 2" not in source and "SOLUTION" not in source
    assert top_level is False


def test_block_at_top_level_is_reported_so_the_cell_gets_tagged():
    source, top_level = strip_solutions("a = 1\n### BEGIN SOLUTION\nb = a + 1\n### END SOLUTION")
    assert source == "a = 1\n# YOUR CODE HERE\nraise NotImplementedError()"
    assert top_level is True


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("x = 0\n### BEGIN SOLUTION\nx = 1\n", r"cell 7, line 2: ### BEGIN SOLUTION is never closed"),
        (
            "### BEGIN SOLUTION\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION\n",
            r"cell 7, line 2: nested .* opened at line 1",
        ),
        ("x = 1\n### END SOLUTION\n", r"cell 7, line 2: ### END SOLUTION without a ### BEGIN SOLUTION"),
    ],
    ids=["unclosed", "nested", "stray-end"],
)
def test_marker_mistakes_name_the_cell_and_line(source, message):
    with pytest.raises(MarkerError, match=message):
        strip_solutions(source, where="solutions/01_demo.ipynb, cell 7")


def test_marker_mistake_in_a_notebook_names_file_and_cell():
    solution = new_notebook(cells=[new_code_cell("x = 1"), new_code_cell("### BEGIN SOLUTION\nx = 2")])
    with pytest.raises(MarkerError, match=r"solutions/01_demo.ipynb, cell 1, line 1"):
        exercise_notebook(solution, "01_demo.ipynb")


def test_exercise_notebook_clears_outputs_and_tags_raising_cells():
    solution = new_notebook(
        cells=[
            new_code_cell(
                SOLUTION_IN_FUNCTION,
                execution_count=3,
                outputs=[nbformat.v4.new_output("stream", text="x")],
                metadata={"execution": {"iopub.status.busy": "2026-11-29T13:00:00Z"}},
            ),
            new_code_cell("### BEGIN SOLUTION\nx = 1\n### END SOLUTION", execution_count=4),
        ]
    )
    exercise = exercise_notebook(solution, "01_demo.ipynb")
    header, *cells = exercise.cells
    assert header.id == HEADER_ID and "solutions/01_demo.ipynb" in header.source and "make exercises" in header.source
    cells = cells[:2]  # the summary cells follow
    assert [c.outputs for c in cells] == [[], []]
    assert [c.execution_count for c in cells] == [None, None]
    assert "execution" not in cells[0].metadata, "run timestamps of the solution must not reach the exercise"
    assert "tags" not in cells[0].metadata
    assert cells[1].metadata["tags"] == [RAISES_TAG]
    assert solution.cells[0].outputs, "the solution notebook itself must not be modified"


def test_build_writes_only_what_changed(tmp_path):
    solutions, exercises, work = tmp_path / "solutions", tmp_path / "exercises", tmp_path / "work"
    solutions.mkdir()
    nbformat.write(new_notebook(cells=[new_code_cell(SOLUTION_IN_FUNCTION)]), solutions / "01_demo.ipynb")
    nbformat.write(new_notebook(cells=[new_code_cell("x = 1")]), solutions / "02_other.ipynb")
    assert stale_exercises(solutions, exercises) == ["01_demo.ipynb", "02_other.ipynb"]
    written, rescued = build_exercises(solutions, exercises, work)
    assert [p.name for p in written] == ["01_demo.ipynb", "02_other.ipynb"] and rescued == []
    assert build_exercises(solutions, exercises, work) == ([], [])
    assert stale_exercises(solutions, exercises) == []
    nbformat.write(new_notebook(cells=[new_code_cell("x = 2")]), solutions / "02_other.ipynb")
    assert stale_exercises(solutions, exercises) == ["02_other.ipynb"]
    written, rescued = build_exercises(solutions, exercises, work)
    assert [p.name for p in written] == ["02_other.ipynb"]
    # Outside git nothing tells a generated file from a learner's edit: the old file is kept in the workspace.
    assert rescued == [work / "exercises" / "02_other.ipynb"]
    assert "x = 2" in (exercises / "02_other.ipynb").read_text(encoding="utf-8")
    (exercises / "99_orphan.ipynb").write_text("{}")
    assert stale_exercises(solutions, exercises) == ["99_orphan.ipynb"]
    assert build_exercises(solutions, exercises, work)[0] == [exercises / "99_orphan.ipynb"]
    assert not (exercises / "99_orphan.ipynb").exists() and (work / "exercises" / "99_orphan.ipynb").exists()
    assert stale_exercises(solutions, exercises) == []


def test_exercise_notebooks_say_where_to_work_and_end_with_the_progress_summary():
    exercise = exercise_notebook(new_notebook(cells=[new_code_cell("x = 1")]), "01_demo.ipynb")
    assert "work/exercises/01_demo.ipynb" in exercise.cells[0].source
    assert exercise.cells[-1].id == SUMMARY_ID and "summary()" in exercise.cells[-1].source


def test_committed_exercises_match_the_generator():
    assert stale_exercises() == [], (
        "exercises/ differs from what the generator makes from solutions/. Instructors: run `make exercises` and "
        "commit. Learners: answers belong in work/exercises/ (`make lab` makes it); `make exercises` first copies "
        "an edited exercises/ file there, then restores the course's version."
    )


def test_every_solution_has_answers_and_checks():
    for path in sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb")):
        sources = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
        answers = sum(s.count("### BEGIN SOLUTION") for s in sources)
        checks = sum(("check(" in s or "run_checks(" in s) for s in sources)
        assert answers >= 3 and checks >= 3, f"{path.name}: {answers} answers, {checks} check cells"


def test_check_reports_pass_fail_and_not_implemented(capsys):
    def not_done():
        raise NotImplementedError()

    def wrong():
        raise AssertionError("1 + 1 は 2 です")

    check("a", lambda: None)
    check("b", not_done)
    check("c", wrong)
    check("d", lambda: 1 / 0)
    run_checks({"e": lambda: None, "f": not_done})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7, lines
    assert lines[0] == "✅ a: 合格"
    assert lines[1].startswith("⏳ b: まだ実装されていません")
    assert lines[2] == "❌ c: 不合格 — 1 + 1 は 2 です"
    assert lines[3] == "❌ d: 実行中にエラー — ZeroDivisionError: division by zero"
    assert lines[4] == "✅ e: 合格" and lines[5].startswith("⏳ f: まだ実装されていません")
    assert lines[6] == "— 1/2 件合格"


def _stdout_of(path) -> str:
    notebook = nbformat.read(path, as_version=4)
    resources = {"metadata": {"path": str(path.parent)}}
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources=resources).execute()
    return "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)


def test_generated_exercise_runs_and_its_checks_fail_until_solved():
    """The checks are real: the unsolved exercise reports ⏳ for each one, the solution ✅ for each one."""
    unsolved = _stdout_of(ROOT / "exercises" / "00_setup.ipynb")
    solved = _stdout_of(ROOT / "solutions" / "00_setup.ipynb")
    assert unsolved.count("⏳") == 3 * 2 and "✅" not in unsolved, "each check, and each again in the summary"
    assert unsolved.rstrip().endswith("— このノートブックの進み具合: 0/3 件合格")
    assert solved.count("✅") == 3 and "❌" not in solved and "⏳" not in solved


def test_checks_leave_records_for_the_tools_and_the_summary(tmp_path, monkeypatch, capsys):
    """progress and grade read these records (COURSE_CHECK_RECORD), not the printed lines."""
    record = tmp_path / "checks.jsonl"
    monkeypatch.setenv(RECORD_ENV, str(record))
    monkeypatch.setattr(checking, "_results", {})

    def wrong():
        raise AssertionError("2 を期待\n詳しくは…")

    check("a", lambda: None)
    check("b", wrong)
    check("a", wrong)  # run again after a change: the latest result counts
    lines = [json.loads(line) for line in record.read_text(encoding="utf-8").splitlines()]
    assert [(r["title"], r["status"]) for r in lines] == [("a", "pass"), ("b", "fail"), ("a", "fail")]
    assert lines[1]["message"] == "不合格 — 2 を期待\n詳しくは…"
    capsys.readouterr()
    summary()
    assert capsys.readouterr().out.splitlines() == [
        "❌ b: 不合格 — 2 を期待",
        "❌ a: 不合格 — 2 を期待",
        "— このノートブックの進み具合: 0/2 件合格",
    ]
