"""`python -m course_lib` sub-commands."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat

from course_lib.__main__ import ROOT


def run(*args: str, root: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """`python -m course_lib args…` in root (the course_lib found there is the one that runs: `-m` puts cwd first)."""
    env = {key: value for key, value in os.environ.items() if key not in {"PYTHONPATH", "PYTHONSAFEPATH"}}
    return subprocess.run(
        [sys.executable, "-m", "course_lib", *args], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def test_doctor_prints_versions_and_cache_state():
    result = run("doctor")
    assert result.returncode == 0, result.stderr
    for key in ("python", "torch", "onnxruntime", "cpu cores", "imagenet resnet50 weights"):
        assert key in result.stdout


def test_exercises_check_passes_on_the_committed_tree():
    result = run("exercises", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_unknown_options_are_refused_outside_lab():
    result = run("doctor", "--bogus")
    assert result.returncode == 2 and "unrecognized arguments: --bogus" in result.stderr


def test_exercises_check_names_every_stale_exercise_and_fails(tmp_path):
    """In a copy of the course: build, check (clean), then edit, delete, orphan and out-date exercises; check again."""
    shutil.copytree(ROOT / "course_lib", tmp_path / "course_lib", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "solutions", tmp_path / "solutions")
    solutions = sorted(path.name for path in (tmp_path / "solutions").glob("[0-9][0-9]_*.ipynb"))
    assert len(solutions) >= 4
    built = run("exercises", root=tmp_path)
    assert built.returncode == 0 and built.stdout.startswith(f"{len(solutions)} exercise notebook(s) changed"), built
    clean = run("exercises", "--check", root=tmp_path)
    assert (clean.returncode, clean.stdout) == (0, ""), clean

    exercises = tmp_path / "exercises"
    edited = nbformat.read(exercises / solutions[0], as_version=4)
    edited.cells.append(nbformat.v4.new_code_cell("print('my own cell')"))
    nbformat.write(edited, exercises / solutions[0])
    (exercises / solutions[1]).unlink()
    changed = nbformat.read(tmp_path / "solutions" / solutions[2], as_version=4)
    changed.cells.append(nbformat.v4.new_markdown_cell("a new paragraph in the solution"))
    nbformat.write(changed, tmp_path / "solutions" / solutions[2])
    shutil.copy(exercises / solutions[3], exercises / "99_orphan.ipynb")

    stale = run("exercises", "--check", root=tmp_path)
    assert stale.returncode == 1, stale
    assert stale.stdout.splitlines() == [
        f"out of date: exercises/{name} (run `make exercises`)" for name in [*solutions[:3], "99_orphan.ipynb"]
    ]
    rebuilt = run("exercises", root=tmp_path)
    assert "deleted (no solution) exercises/99_orphan.ipynb" in rebuilt.stdout, rebuilt
    assert run("exercises", "--check", root=tmp_path).returncode == 0
