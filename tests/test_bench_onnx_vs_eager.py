"""bench_onnx_vs_eager times each runtime on its own calls, on the thread count asked for, and restores torch's."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import EAGER_EXTRA_S, SlowEager

from bench.bench_onnx_vs_eager import paired_p50, rows_for
from bench.report import REPORT_ONLY
from course_lib.data import iris_rows
from course_lib.models import train_simple_nn
from course_lib.serialization import export_onnx


@pytest.fixture(scope="module")
def nn_onnx(net, tmp_path_factory) -> Path:
    return export_onnx(net, torch.zeros(1, 4), tmp_path_factory.mktemp("onnx") / "nn.onnx")


@pytest.mark.parametrize(("threads", "n", "untimed_per_block"), [(1, 20, 4), (2, 10, 2)])
def test_each_p50_is_its_own_runtime_s_on_the_threads_asked_for(net, nn_onnx, threads, n, untimed_per_block):
    slow = SlowEager(net)
    before = torch.get_num_threads()
    eager_ms, ort_ms = paired_p50(slow, nn_onnx, torch.from_numpy(iris_rows(8)), n=n, threads=threads, warmup=2)
    assert torch.get_num_threads() == before
    # one output check, 2 warm-up calls, n timed calls, and one untimed call per block of 5
    assert len(slow.threads_seen) == 1 + 2 + n + untimed_per_block
    assert set(slow.threads_seen) == {threads}
    assert eager_ms >= EAGER_EXTRA_S * 1000  # the eager p50 includes the eager call (a sleep never ends early)
    # Swapped or duplicated figures would put the 20 ms on the onnxruntime side; its real call is ~1,000× shorter.
    assert ort_ms < eager_ms / 2


def test_paired_p50_refuses_a_file_of_another_model_and_still_restores_threads(net, tmp_path: Path):
    other, _ = train_simple_nn(seed=1)
    path = export_onnx(other, torch.zeros(1, 4), tmp_path / "other.onnx")
    before = torch.get_num_threads()
    with pytest.raises(AssertionError, match="Not equal to tolerance"):
        paired_p50(net, path, torch.from_numpy(iris_rows(8)), n=2, threads=1, warmup=0)
    assert torch.get_num_threads() == before


def test_rows_report_the_ratio_without_a_goal_and_switch_to_microseconds():
    rows = rows_for("SimpleNN", 0.02, 0.01)
    assert rows[0].value == 2.0 and rows[0].unit == "×" and rows[0].verdict == REPORT_ONLY
    assert "> 1: onnxruntime faster" in rows[0].metric
    assert [(r.value, r.unit) for r in rows[1:]] == [(20.0, "µs"), (10.0, "µs")]
    assert [(r.value, r.unit) for r in rows_for("ResNet", 50.0, 25.0)[1:]] == [(50.0, "ms"), (25.0, "ms")]
    assert rows_for("ResNet", 50.0, 25.0)[0].value == 2.0
