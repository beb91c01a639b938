"""`python -m course_lib progress [FOLDER]`: run the learner's exercise notebooks and show each check's result."""

from __future__ import annotations

from pathlib import Path

from course_lib.exercises.checking import SYMBOLS, CheckResult, first_line
from course_lib.exercises.running import PROBLEMS, ROOT, NotebookRun, expected_checks, run_many
from course_lib.workspace import digest, is_learner_copy

NOT_STARTED = "まだ手をつけていません（コースの演習のまま）"


def untouched(path: Path) -> bool:
    """Whether a notebook is byte for byte the course's exercise of that name (nothing to run)."""
    course = ROOT / "exercises" / path.name
    return course.exists() and digest(course) == digest(path)


def progress(folder: Path, timeout: float, jobs: int | None = None) -> list[NotebookRun]:
    """Run each of the learner's notebooks in folder (an untouched copy is reported as not started, unrun)."""
    paths = sorted(p for p in folder.glob("*.ipynb") if is_learner_copy(p))
    started = [p for p in paths if not untouched(p)]
    runs = dict(zip(started, run_many(started, timeout, jobs), strict=True))
    for path in paths:
        if path not in runs:
            expected = expected_checks(path.name)
            checks = [CheckResult(title, "todo", NOT_STARTED) for title in expected]
            runs[path] = NotebookRun(path.name, "ok", expected=expected, checks=checks)
    return [runs[p] for p in paths]


def format_progress(runs: list[NotebookRun]) -> str:
    """The Japanese table: notebook, then each exercise with ✅ / ❌ and the check's first message / ⏳ / ⬜."""
    lines, totals = [], dict.fromkeys(SYMBOLS, 0)
    for run in runs:
        head = f"{run.notebook}（{run.seconds:.0f} 秒）" if run.seconds else run.notebook
        if run.status != "ok":
            head += f"  {PROBLEMS[run.status]}: {run.detail}"
        if run.leftovers:
            head += f"  （残っていたプロセス {run.leftovers} 個を止めました）"
        lines.append(head)
        for result in run.outcomes():
            totals[result.status] += 1
            text = "" if result.status == "pass" else f" — {first_line(result.message)}"
            lines.append(f"  {SYMBOLS[result.status]} {result.title}{text}")
    counted = " / ".join(f"{SYMBOLS[s]} {n}" for s, n in totals.items() if n or s != "missing")
    lines.append(f"合計: {counted}（{sum(totals.values())} 問）")
    return "\n".join(lines)
