"""Pass/fail checks that exercise cells call; messages are in Japanese for the learner.

Each check's result is also kept as a record: in this kernel (`results()`, printed by `summary()` at the end of
every exercise notebook) and, when `progress` or `grade` runs the notebook, as one JSON line in the file named by
the COURSE_CHECK_RECORD environment variable, so that those tools read results, not printed text.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Literal

RECORD_ENV = "COURSE_CHECK_RECORD"
Status = Literal["pass", "fail", "todo", "missing"]  # missing: a course tool's run never reached the check
SYMBOLS: dict[str, str] = {"pass": "✅", "fail": "❌", "todo": "⏳", "missing": "⬜"}


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: its title, pass / fail / todo (not implemented yet) / missing, and its message."""

    title: str
    status: Status
    message: str = ""


_results: dict[str, CheckResult] = {}  # this kernel's latest result per title, in the order first run


def _record(result: CheckResult) -> None:
    """Keep the result for summary() and append it to the record file when a course tool asked for one."""
    _results.pop(result.title, None)
    _results[result.title] = result
    if path := os.environ.get(RECORD_ENV):
        with open(path, "a", encoding="utf-8") as record:
            record.write(json.dumps(asdict(result), ensure_ascii=False) + "\n")


def results() -> list[CheckResult]:
    """The latest result of each check run in this kernel."""
    return list(_results.values())


def check(title: str, test: Callable[[], object]) -> None:
    """Run one check and print a Japanese pass/fail line; never raises."""
    passed(title, test)


def passed(title: str, test: Callable[[], object]) -> bool:
    """Run one check, print its Japanese pass/fail line, record it, and return whether it passed."""
    try:
        test()
    except NotImplementedError:
        result = CheckResult(title, "todo", "まだ実装されていません（NotImplementedError）")
        print(f"⏳ {title}: {result.message}。解答を書いてから再実行してください。")
    except AssertionError as exc:
        result = CheckResult(title, "fail", f"不合格 — {exc}")
        print(f"❌ {title}: {result.message}")
    except Exception as exc:  # noqa: BLE001 - report any learner error as a failed check
        result = CheckResult(title, "fail", f"実行中にエラー — {type(exc).__name__}: {exc}")
        print(f"❌ {title}: {result.message}")
    else:
        result = CheckResult(title, "pass", "合格")
        print(f"✅ {title}: 合格")
    _record(result)
    return result.status == "pass"


def run_checks(checks: dict[str, Callable[[], object]]) -> None:
    """Run several named checks and print a line each and a summary; never raises."""
    outcomes = [passed(title, test) for title, test in checks.items()]
    print(f"— {sum(outcomes)}/{len(outcomes)} 件合格")


def first_line(message: str, width: int = 100) -> str:
    """The message's first line, shortened to width characters: what a table cell can show."""
    line = message.strip().splitlines()[0] if message.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def summary() -> None:
    """Print this kernel's check results as a short table: the same view `python -m course_lib progress` gives."""
    done = results()
    if not done:
        print("まだチェックを 1 つも実行していません。上から順にセルを実行してください。")
        return
    for result in done:
        print(f"{SYMBOLS[result.status]} {result.title}: {first_line(result.message)}")
    passes = sum(r.status == "pass" for r in done)
    print(f"— このノートブックの進み具合: {passes}/{len(done)} 件合格")
