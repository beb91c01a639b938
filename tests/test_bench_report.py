"""bench.report's goals and table, and the `python -m bench` runner: goals judged, unmet goals listed, names checked."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest

from bench.__main__ import benchmark_names, main, report, run_all, run_and_report
from bench.report import MET, REPORT_ONLY, UNMET, Goal, Row, goal_summary, machine_line, markdown_table, unmet

BENCH = Path(__file__).resolve().parents[1] / "bench"

# Figures of a real run: three unmet goals first, then a met goal and a report-only row.
MEASURED = [
    Row("image_api", "digits: end-to-end p50 / in-process p50 (torch)", 1.33, goal=Goal("<=", 1.10)),
    Row("image_api", "digits: end-to-end p50 / in-process p50 (onnx)", 1.87, goal=Goal("<=", 1.10)),
    Row("image_api", "ResNet-50: eager p50 / onnxruntime p50 (in-process)", 1.28, goal=Goal(">=", 1.5)),
    Row("deployment_patterns", "scikit-learn p50 / ONNX Runtime p50", 31.0, goal=Goal(">=", 10)),
    Row("image_api", "digits: in-process p50, eager", 4.2, unit="ms"),
]


@pytest.mark.parametrize(
    ("op", "threshold", "value", "expected"),
    [
        ("<=", 1.10, 1.05, True),
        ("<=", 1.10, 1.10, True),  # boundary: "≤" includes the threshold
        ("<=", 1.10, 1.1000001, False),
        ("<=", 1.10, 1.33, False),
        ("<", 1.10, 1.10, False),  # boundary: "<" excludes it
        ("<", 1.10, 1.09, True),
        (">=", 1.5, 1.5, True),
        (">=", 1.5, 1.4999, False),
        (">=", 1.5, 1.28, False),
        (">", 1.5, 1.5, False),
        (">", 1.5, 2.0, True),
    ],
)
def test_goal_compares_in_its_own_direction_and_at_the_boundary(op, threshold, value, expected):
    assert Goal(op, threshold).met(value) is expected


@pytest.mark.parametrize("op", ["<=", "<", ">=", ">"])
def test_a_measurement_that_failed_to_produce_a_number_never_meets_a_goal(op):
    assert not Goal(op, 1.0).met(math.nan)


def test_goal_prints_as_its_math_symbol():
    assert [str(Goal(op, t)) for op, t in [("<=", 1.10), ("<", 2), (">=", 1.5), (">", 100)]] == [
        "≤ 1.1",
        "< 2",
        "≥ 1.5",
        "> 100",
    ]


@pytest.mark.parametrize("op", ["=<", "≤", "==", ""])
def test_unknown_comparison_is_refused(op):
    with pytest.raises(ValueError, match="goal comparison must be one of"):
        Goal(op, 1.0)


def test_row_verdict_met_unmet_and_report_only():
    assert [row.verdict for row in MEASURED] == [UNMET, UNMET, UNMET, MET, REPORT_ONLY]
    assert (MET, UNMET, REPORT_ONLY) == ("✅", "❌", "report only")


def test_table_names_the_machine_and_shows_goal_and_verdict_per_row():
    table = markdown_table(MEASURED[:1] + MEASURED[3:])
    lines = table.splitlines()
    assert lines[0] == machine_line() and f"{os.cpu_count()} cores" in lines[0]
    assert lines[2] == "| benchmark | metric | measured | goal | met |"
    assert lines[4:] == [
        "| image_api | digits: end-to-end p50 / in-process p50 (torch) | 1.33 × | ≤ 1.1 | ❌ |",
        "| deployment_patterns | scikit-learn p50 / ONNX Runtime p50 | 31.00 × | ≥ 10 | ✅ |",
        "| image_api | digits: in-process p50, eager | 4.20 ms | — | report only |",
    ]


@pytest.mark.parametrize(
    ("value", "goal", "shown"),
    [
        (1.1008, Goal("<=", 1.10), "1.101 ×"),  # "1.10" would read as met
        (1.10, Goal("<=", 1.10), "1.10 ×"),
        (1.0996, Goal(">", 1.10), "1.10 ×"),  # "1.10 ❌ against > 1.1" already agrees
        (1.0996, Goal(">=", 1.10), "1.0996 ×"),  # "1.10" and "1.100" would read as met
        (1.1049, Goal("<=", 1.50), "1.10 ×"),  # far from the threshold: the usual 2 decimals
        (1.1049, None, "1.10 ×"),
        (0.0012345, Goal("<=", 0.00123), "0.001234 ×"),
        (0.0012345, None, "0.00123 ×"),
    ],
)
def test_measured_value_shows_enough_digits_to_agree_with_its_verdict(value, goal, shown):
    assert Row("b", "m", value, goal=goal).measured == shown


def test_summary_lists_exactly_the_unmet_goals_with_value_and_goal():
    assert unmet(MEASURED) == MEASURED[:3]
    assert goal_summary(MEASURED).splitlines() == [
        "goals: 1 met, 3 unmet, 1 report only",
        "",
        "❌ unmet goals:",
        "- image_api: digits: end-to-end p50 / in-process p50 (torch) = 1.33 ×, goal ≤ 1.1",
        "- image_api: digits: end-to-end p50 / in-process p50 (onnx) = 1.87 ×, goal ≤ 1.1",
        "- image_api: ResNet-50: eager p50 / onnxruntime p50 (in-process) = 1.28 ×, goal ≥ 1.5",
    ]


def test_summary_when_every_goal_is_met_or_there_is_none():
    assert goal_summary(MEASURED[3:]) == "goals: 1 met, 0 unmet, 1 report only — every goal met"
    assert goal_summary(MEASURED[4:]) == "goals: 0 met, 0 unmet, 1 report only"


def _measured_run(quick: bool = False) -> list[Row]:
    """A benchmark whose figures are given: one met, one unmet goal and a report-only row (quick halves none)."""
    return [MEASURED[3], MEASURED[0], MEASURED[4]]


def _broken_run(quick: bool = False) -> list[Row]:
    """A benchmark that raises before producing a row."""
    raise RuntimeError("server did not start")


def test_runner_keeps_going_after_a_broken_benchmark_and_ends_with_the_unmet_goals(capsys):
    rows, failed = run_all({"broken": _broken_run, "measured": _measured_run}, quick=True)
    assert rows == _measured_run() and failed == ["broken"]
    captured = capsys.readouterr()
    assert "RuntimeError: server did not start" in captured.err
    assert "== broken" in captured.out and "== measured" in captured.out
    lines = report(rows, failed).splitlines()
    assert "failed: broken" in lines
    assert lines[-3:] == [
        "",
        "❌ unmet goals:",
        "- image_api: digits: end-to-end p50 / in-process p50 (torch) = 1.33 ×, goal ≤ 1.1",
    ]


@pytest.mark.parametrize(
    ("runners", "status"), [({"measured": _measured_run}, 0), ({"measured": _measured_run, "broken": _broken_run}, 1)]
)
def test_unmet_goals_are_a_report_and_exit_0_a_broken_benchmark_exits_1(tmp_path, capsys, runners, status):
    out_file = tmp_path / "results" / "latest.md"
    assert run_and_report(runners, quick=True, out=out_file) == status
    printed = capsys.readouterr().out
    saved = out_file.read_text(encoding="utf-8")
    assert saved.startswith(machine_line()) and saved.rstrip("\n") in printed
    assert "goals: 1 met, 1 unmet, 1 report only" in saved and "❌ unmet goals:" in saved
    assert f"saved to {out_file}" in printed


def test_benchmark_names_are_the_bench_modules():
    assert benchmark_names() == sorted(p.stem.removeprefix("bench_") for p in BENCH.glob("bench_*.py"))
    assert "async_pitfall" in benchmark_names() and "image_api" in benchmark_names()


@pytest.mark.parametrize("names", [["no-such-benchmark"], ["async_pitfall", "async-pitfall"]])
def test_a_name_that_matches_no_benchmark_is_an_error_listing_the_names(tmp_path, capsys, names):
    out_file = tmp_path / "table.md"
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(out_file), *names])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"no benchmark named {names[-1]!r}" in err
    assert "the benchmarks are: " + ", ".join(benchmark_names()) in err
    assert not out_file.exists()  # nothing ran
