"""Pass/fail checks that exercise cells call; messages are in Japanese for the learner."""

from __future__ import annotations

from collections.abc import Callable


def check(title: str, test: Callable[[], object]) -> None:
    """Run one check and print a Japanese pass/fail line; never raises."""
    passed(title, test)


def passed(title: str, test: Callable[[], object]) -> bool:
    """Run one check, print its Japanese pass/fail line, and return whether it passed."""
    try:
        test()
    except NotImplementedError:
        print(f"⏳ {title}: まだ実装されていません（NotImplementedError）。解答を書いてから再実行してください。")
        return False
    except AssertionError as exc:
        print(f"❌ {title}: 不合格 — {exc}")
        return False
    except Exception as exc:  # noqa: BLE001 - report any learner error as a failed check
        print(f"❌ {title}: 実行中にエラー — {type(exc).__name__}: {exc}")
        return False
    print(f"✅ {title}: 合格")
    return True


def run_checks(checks: dict[str, Callable[[], object]]) -> None:
    """Run several named checks and print a line each and a summary; never raises."""
    results = [passed(title, test) for title, test in checks.items()]
    print(f"— {sum(results)}/{len(results)} 件合格")
