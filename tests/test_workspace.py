"""The learner's workspace: `make lab` copies notebooks in; nothing the course runs overwrites the learner's work."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from course_lib.exercises.build import build_exercises
from course_lib.workspace import ROOT, STATE_FILE, digest, learner_changed, sync_workspace

ANSWER = "def is_healthy(url):\n    return True  # the learner's answer"


def write_notebook(path: Path, *sources: str) -> None:
    """A small notebook with one code cell per source."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=[new_code_cell(s) for s in sources]), path)


@pytest.fixture
def course(tmp_path: Path) -> Path:
    """A course folder with a lesson, an exercise and a solution."""
    for folder in ("notebooks", "exercises", "solutions"):
        write_notebook(tmp_path / "course" / folder / "00_demo.ipynb", f"print('{folder} v1')")
    return tmp_path / "course"


def test_first_sync_copies_every_notebook(course, tmp_path):
    workspace = tmp_path / "work"
    report = sync_workspace(course, workspace)
    assert report.added == ["notebooks/00_demo.ipynb", "exercises/00_demo.ipynb", "solutions/00_demo.ipynb"]
    for name in report.added:
        assert (workspace / name).read_bytes() == (course / name).read_bytes()
    assert sync_workspace(course, workspace).lines() == [], "a second sync with nothing new says nothing"


def test_a_learners_answer_is_never_overwritten(course, tmp_path):
    workspace = tmp_path / "work"
    sync_workspace(course, workspace)
    mine = workspace / "exercises/00_demo.ipynb"
    write_notebook(mine, ANSWER)
    answered = mine.read_bytes()
    assert sync_workspace(course, workspace).lines() == []
    assert mine.read_bytes() == answered

    write_notebook(course / "exercises/00_demo.ipynb", "print('exercises v2')")  # a course update
    report = sync_workspace(course, workspace)
    assert mine.read_bytes() == answered, "the learner's copy must survive a course update"
    [(relative, new)] = report.beside
    assert relative == "exercises/00_demo.ipynb" and new.startswith("exercises/00_demo.updated-")
    assert (workspace / new).read_bytes() == (course / "exercises/00_demo.ipynb").read_bytes()
    assert "新しい版を exercises/00_demo.updated-" in report.lines()[0]
    again = sync_workspace(course, workspace)
    assert again.beside == report.beside, "the update is pointed out again, not written again"
    assert sorted(p.name for p in (workspace / "exercises").iterdir()) == ["00_demo.ipynb", Path(new).name]


def test_an_untouched_copy_follows_the_course(course, tmp_path):
    workspace = tmp_path / "work"
    sync_workspace(course, workspace)
    write_notebook(course / "notebooks/00_demo.ipynb", "print('notebooks v2')")
    report = sync_workspace(course, workspace)
    assert report.updated == ["notebooks/00_demo.ipynb"] and report.beside == []
    assert (workspace / "notebooks/00_demo.ipynb").read_bytes() == (course / "notebooks/00_demo.ipynb").read_bytes()


def test_a_deleted_copy_comes_back_and_other_files_are_left_alone(course, tmp_path):
    workspace = tmp_path / "work"
    sync_workspace(course, workspace)
    (workspace / "solutions/00_demo.ipynb").unlink()
    notes = workspace / "exercises/my_notes.ipynb"
    write_notebook(notes, "x = 1")
    assert sync_workspace(course, workspace).added == ["solutions/00_demo.ipynb"]
    assert notes.exists()
    state = json.loads((workspace / STATE_FILE).read_text())
    assert state["solutions/00_demo.ipynb"] == digest(course / "solutions/00_demo.ipynb")


def git(folder: Path, *args: str) -> str:
    """Run git in folder with a fixed identity; return its output."""
    command = ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", "-C", str(folder), *args]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def test_make_exercises_keeps_answers_written_in_exercises(tmp_path):
    """Learners of earlier versions wrote in exercises/: regenerating copies their file to the workspace first."""
    course, workspace = tmp_path / "course", tmp_path / "work"
    write_notebook(
        course / "solutions/00_demo.ipynb", "def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION"
    )
    build_exercises(course / "solutions", course / "exercises", workspace)
    git(course, "init", "-q")
    git(course, "add", ".")
    git(course, "commit", "-qm", "course")
    exercise = course / "exercises/00_demo.ipynb"
    assert not learner_changed(exercise, course)
    assert build_exercises(course / "solutions", course / "exercises", workspace) == ([], [])

    write_notebook(exercise, ANSWER)  # the learner answers in exercises/ and saves
    answered = exercise.read_bytes()
    assert learner_changed(exercise, course)
    changed, rescued = build_exercises(course / "solutions", course / "exercises", workspace)
    assert changed == [exercise] and rescued == [workspace / "exercises/00_demo.ipynb"]
    assert rescued[0].read_bytes() == answered
    assert "NotImplementedError" in exercise.read_text()

    write_notebook(exercise, ANSWER + "  # a second answer")
    _, [second] = build_exercises(course / "solutions", course / "exercises", workspace)
    assert second.name.startswith("00_demo.rescued-"), "an existing workspace copy is never replaced"
    assert rescued[0].read_bytes() == answered


def copy_course(source: Path, target: Path) -> None:
    """The course as it is in the working tree (tracked and new files, not ignored ones), committed in a new repo."""
    listed = git(source, "ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0")
    for name in filter(None, listed):
        if (source / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, target / name)
    git(target, "init", "-q")
    git(target, "add", ".")
    git(target, "commit", "-qm", "the course")


def course_command(clone: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m course_lib ARGS` run in a clone: the clone's own course_lib (the current directory comes first)."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(clone.parent), "PYTHONPATH": str(clone)}
    return subprocess.run(
        [sys.executable, "-m", "course_lib", *args], cwd=clone, env=env, capture_output=True, text=True, timeout=300
    )


def test_answers_survive_lab_exercises_lint_and_a_course_update(tmp_path):
    """The learner's flow on a real clone: make lab, answer, make exercises, lint, git pull of an update, make lab."""
    upstream, clone = tmp_path / "upstream", tmp_path / "learner"
    copy_course(ROOT, upstream)
    git(tmp_path, "clone", "-q", str(upstream), str(clone))
    lab = course_command(clone, "lab", "--version")  # syncs the workspace, then jupyter lab --version
    assert lab.returncode == 0, lab.stderr
    assert "作業フォルダー" in lab.stdout
    mine = clone / "work/exercises/00_setup.ipynb"
    notebook = nbformat.read(mine, as_version=4)
    notebook.cells.append(new_code_cell(ANSWER + "\nimport os, sys"))  # the answer, and code ruff would flag
    nbformat.write(notebook, mine)
    answered = mine.read_bytes()

    assert course_command(clone, "exercises").returncode == 0
    assert course_command(clone, "exercises", "--check").returncode == 0, "exercises/ is still the course's"
    ruff = [sys.executable, "-m", "ruff", "check", "--output-format=concise", "."]
    lint = subprocess.run(ruff, cwd=clone, capture_output=True, text=True)
    assert "work/" not in lint.stdout, "make test's lint must not judge the learner's workspace:\n" + lint.stdout
    assert git(clone, "status", "--porcelain") == "", "the workspace is git-ignored"

    solution = upstream / "solutions/00_setup.ipynb"  # the course is updated: an exercise's wording changes
    notebook = nbformat.read(solution, as_version=4)
    notebook.cells.insert(2, new_markdown_cell("更新: 新しい説明"))
    nbformat.write(notebook, solution)
    assert course_command(upstream, "exercises").returncode == 0
    git(upstream, "commit", "-qam", "update exercise 00")
    git(clone, "pull", "-q")  # no conflict: nothing tracked was changed by the learner
    lab = course_command(clone, "lab", "--version")
    assert lab.returncode == 0, lab.stderr
    assert mine.read_bytes() == answered
    [new] = (clone / "work/exercises").glob("00_setup.updated-*.ipynb")
    assert "更新: 新しい説明" in new.read_text(encoding="utf-8")
    assert f"新しい版を exercises/{new.name} に置きました" in lab.stdout
