"""`python -m course_lib` sub-commands."""

from __future__ import annotations

import subprocess
import sys

from course_lib.__main__ import ROOT


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "course_lib", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


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
