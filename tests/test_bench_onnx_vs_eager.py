"""bench_onnx_vs_eager measures both runtimes on the same model and restores torch's thread count."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.bench_onnx_vs_eager import paired_p50, rows_for
from course_lib.data import iris_rows
from course_lib.models import train_simple_nn
from course_lib.serialization import export_onnx


def test_paired_p50_measures_both_and_restores_threads(tmp_path: Path):
    net, _ = train_simple_nn()
    path = export_onnx(net, torch.zeros(1, 4), tmp_path / "nn.onnx")
    before = torch.get_num_threads()
    eager_ms, ort_ms = paired_p50(net, path, torch.from_numpy(iris_rows(8)), n=20, threads=1, warmup=2)
    assert eager_ms > 0 and ort_ms > 0
    assert torch.get_num_threads() == before


def test_paired_p50_refuses_a_file_of_another_model(tmp_path: Path):
    net, _ = train_simple_nn()
    other, _ = train_simple_nn(seed=1)
    path = export_onnx(other, torch.zeros(1, 4), tmp_path / "other.onnx")
    with pytest.raises(AssertionError, match="Not equal to tolerance"):
        paired_p50(net, path, torch.from_numpy(iris_rows(8)), n=2, threads=1, warmup=0)


def test_rows_report_the_ratio_and_switch_to_microseconds():
    rows = rows_for("SimpleNN", 0.02, 0.01)
    assert rows[0].value == 2.0 and rows[0].unit == "×"
    assert [(r.value, r.unit) for r in rows[1:]] == [(20.0, "µs"), (10.0, "µs")]
    assert [r.unit for r in rows_for("ResNet", 50.0, 25.0)[1:]] == ["ms", "ms"]
