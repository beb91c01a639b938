"""course_lib.bench: statistics on known samples, and latency of real HTTP calls."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from flask import Flask

from course_lib.bench import LatencyStats, concurrent_calls, http_latency, stats_table, time_calls
from course_lib.servers import serve


def test_summary_matches_numpy_on_known_samples():
    stats = LatencyStats.from_seconds([0.001 * i for i in range(1, 101)], wall_s=2.0)
    summary = stats.summary()
    assert summary["n"] == 100
    assert summary["mean_ms"] == pytest.approx(50.5)
    assert summary["median_ms"] == pytest.approx(50.5)
    assert summary["min_ms"] == pytest.approx(1.0) and summary["max_ms"] == pytest.approx(100.0)
    assert summary["p95_ms"] == pytest.approx(np.percentile(np.arange(1, 101), 95))
    assert summary["p99_ms"] == pytest.approx(99.01)
    assert summary["std_ms"] == pytest.approx(np.std(np.arange(1, 101)))
    assert summary["throughput_per_s"] == pytest.approx(50.0)


def test_empty_samples_are_rejected():
    with pytest.raises(ValueError):
        LatencyStats.from_seconds([])


def test_time_calls_counts_warmup_separately():
    calls = []
    stats = time_calls(lambda: calls.append(1), n=20, warmup=3)
    assert stats.n == 20 and len(calls) == 23


def test_concurrent_calls_spreads_work_over_threads():
    seen = set()
    lock = threading.Lock()

    def make_call():
        def call():
            with lock:
                seen.add(threading.get_ident())
        return call

    stats = concurrent_calls(make_call, n=41, concurrency=4, warmup=1)
    assert stats.n == 41 and stats.concurrency == 4 and len(seen) == 4


def test_http_latency_over_a_real_server_and_wrong_status_raises():
    app = Flask("bench")
    app.get("/ok")(lambda: {"ok": True})
    with serve(app) as server:
        sequential = http_latency("GET", server.url + "/ok", n=30, warmup=2)
        parallel = http_latency("GET", server.url + "/ok", n=30, concurrency=3, warmup=1)
        with pytest.raises(RuntimeError, match="answered 404"):
            http_latency("GET", server.url + "/missing", n=1, warmup=0)
    assert sequential.n == parallel.n == 30
    assert sequential.p50 > 0 and parallel.p99 >= parallel.p50
    table = stats_table({"sequential": sequential, "parallel": parallel})
    assert list(table.index) == ["sequential", "parallel"]
