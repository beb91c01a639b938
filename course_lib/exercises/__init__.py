"""Exercise pipeline: build exercises/ from solutions/, and the checks the exercise cells call."""

from course_lib.exercises.build import build_exercises, stale_exercises
from course_lib.exercises.checking import check, run_checks, summary

__all__ = ["build_exercises", "stale_exercises", "check", "run_checks", "summary"]
