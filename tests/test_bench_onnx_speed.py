"""bench_onnx_speed times each runtime on its own calls, on the threads asked for, and puts the goals on the right
rows (eager ÷ onnxruntime at all cores, the digits accuracy cost)."""

from __future__ import annotations

import pytest
import torch
from helpers import EAGER_EXTRA_S, SlowEager

from bench.bench_onnx_speed import accuracy_rows, measure, settings_rows, speed_rows
from bench.report import REPORT_ONLY, Goal
from course_lib.vision.backends import make_backend


@pytest.fixture(scope="module")
def int8_backend(classifier):
    return make_backend(classifier, "onnx-int8")


@pytest.mark.parametrize("threads", [1, None])
def test_each_p50_is_its_own_runtime_s_on_the_threads_asked_for(classifier, int8_backend, threads):
    slow = SlowEager(classifier.model)
    before = torch.get_num_threads()
    paths = {"fp32": int8_backend.fp32_path, "int8": int8_backend.path}
    p50 = measure(slow, paths, classifier.example_input(1), n=6, warmup=1, threads=threads)
    assert torch.get_num_threads() == before
    assert set(slow.threads_seen) == {threads or before}
    assert sorted(p50) == ["eager (fp32 pair)", "eager (int8 pair)", "fp32", "int8"]
    for kind in ("fp32", "int8"):
        assert p50[f"eager ({kind} pair)"] >= EAGER_EXTRA_S * 1000  # a sleep never ends early
        assert p50[kind] < p50[f"eager ({kind} pair)"] / 2  # swapped figures would put the 20 ms here


def test_speed_rows_divide_eager_by_onnxruntime_and_fp32_by_int8_with_goals_only_at_all_cores():
    p50 = {"eager (fp32 pair)": 60.0, "fp32": 40.0, "eager (int8 pair)": 64.0, "int8": 16.0}
    rows = speed_rows("ResNet-50", p50, goals=True)
    assert [(r.value, r.goal) for r in rows[:3]] == [
        (1.5, Goal(">=", 1.5)),
        (4.0, Goal(">=", 4.0)),
        (2.5, Goal(">=", 1.0)),
    ]
    assert [(r.value, r.unit) for r in rows[3:]] == [(60.0, "ms"), (40.0, "ms"), (16.0, "ms")]
    assert all(r.verdict == REPORT_ONLY for r in speed_rows("1 thread", p50, goals=False))


def test_accuracy_rows_judge_the_digits_drop_and_agreement(int8_backend):
    rows = {row.metric.rsplit(": ", 1)[1]: row for row in accuracy_rows(int8_backend, goals=True)}
    assert sorted(rows) == ["accuracy drop", "fp32 accuracy", "int8 accuracy", "top-1 agreement"]
    assert rows["accuracy drop"].goal == Goal("<=", 0.5) and rows["accuracy drop"].unit == "points"
    assert rows["top-1 agreement"].goal == Goal(">=", 99.0) and rows["top-1 agreement"].unit == "%"
    drop = rows["fp32 accuracy"].value - rows["int8 accuracy"].value
    assert rows["accuracy drop"].value == pytest.approx(drop)


def test_settings_rows_compare_one_changed_setting_with_the_served_session(classifier, int8_backend):
    rows = settings_rows(int8_backend.fp32_path, classifier.example_input(1).numpy(), n=3, warmup=1)
    assert [r.metric.split(" with ")[1].split(" / ")[0] for r in rows] == [
        "intra-op spinning on",
        "ORT_ENABLE_EXTENDED instead of ORT_ENABLE_ALL",
    ]
    assert all(r.verdict == REPORT_ONLY for r in rows)
