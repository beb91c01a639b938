"""bench_image_api: every backend, onnx-int8 included, gets an end-to-end / in-process row with the ≤ 1.10 goal,
measured over a real server; `auto` is served beside the fastest backend and gets the ≤ 1.05 goal."""

from __future__ import annotations

import numpy as np
import pytest
from hardening import listening_ports

from bench.bench_image_api import BACKENDS, measure, rows_for
from bench.report import Goal
from course_lib.bench import LatencyStats

# p50 in ms per measured key: each backend's HTTP and in-process figures differ, so a swapped or borrowed one shows.
P50 = {
    "torch in-process": 10.0,
    "torch http": 12.0,
    "onnx in-process": 5.0,
    "onnx http": 6.0,
    "onnx-int8 in-process": 4.0,
    "onnx-int8 http": 5.0,
    "auto http": 6.3,
    "best http": 6.0,
}
NAMES = {"auto": "onnx", "best": "onnx-int8"}


def stats(p50_ms: float) -> LatencyStats:
    """Three samples whose median is p50_ms."""
    return LatencyStats(np.array([p50_ms * 0.9, p50_ms, p50_ms * 1.5]))


def test_each_backend_has_an_http_overhead_row_with_its_own_figures_and_the_goal():
    rows = {row.metric: row for row in rows_for("ResNet-50", {key: stats(ms) for key, ms in P50.items()}, NAMES)}
    assert BACKENDS == ("torch", "onnx", "onnx-int8")
    for backend, ratio in [("torch", 1.2), ("onnx", 1.2), ("onnx-int8", 1.25)]:
        row = rows[f"ResNet-50: end-to-end p50 / in-process p50 ({backend})"]
        assert row.goal == Goal("<=", 1.10)
        assert row.value == pytest.approx(ratio)  # HTTP / in-process, not inverted
    auto = rows["ResNet-50: HTTP p50, auto (chose onnx) / the fastest backend (onnx-int8), side by side"]
    assert auto.goal == Goal("<=", 1.05) and auto.value == pytest.approx(1.05)  # auto / best, not inverted
    assert rows["ResNet-50: HTTP p50, auto (chose onnx), 1 client"].value == pytest.approx(6.3)


def test_measure_times_every_backend_in_process_and_over_http_then_stops_its_servers(classifier):
    ports = listening_ports()
    out, names = measure(classifier, n=2, warmup=0)
    assert sorted(out) == sorted(P50)
    assert all(stats.n == 2 for stats in out.values())
    assert names["best"] == min(BACKENDS, key=lambda b: out[f"{b} http"].p50) and names["auto"] in BACKENDS
    assert listening_ports() <= ports
