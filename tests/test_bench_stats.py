"""course_lib.bench: statistics on known samples, what the timers time, and that concurrent clients overlap."""

from __future__ import annotations

import math
import threading
import time
from collections import Counter

import numpy as np
import pytest
from fastapi import FastAPI, Request
from flask import Flask

from course_lib.bench import (
    LatencyStats,
    http_latency,
    interleaved_calls,
    paired_calls,
    pooled,
    stats_table,
    time_calls,
)
from course_lib.servers import serve

# Skewed on purpose: mean, median, p95 and p99 all differ, so a statistic that returns another one fails.
SKEWED_MS = [3.0, 100.0, 1.0, 4.0, 2.0]  # unsorted: a percentile that forgets to sort fails too


def test_summary_of_known_skewed_samples_matches_hand_computed_values():
    summary = LatencyStats.from_seconds([ms / 1000 for ms in SKEWED_MS], wall_s=0.5).summary()
    assert summary["n"] == 5
    assert summary["mean_ms"] == pytest.approx(22.0)
    assert summary["median_ms"] == pytest.approx(3.0)
    # numpy's linear interpolation: position q/100 × (n - 1) in the sorted samples [1, 2, 3, 4, 100]
    assert summary["p95_ms"] == pytest.approx(4.0 + 0.8 * 96.0)  # position 3.8
    assert summary["p99_ms"] == pytest.approx(4.0 + 0.96 * 96.0)  # position 3.96
    assert summary["min_ms"] == pytest.approx(1.0) and summary["max_ms"] == pytest.approx(100.0)
    assert summary["std_ms"] == pytest.approx(math.sqrt(7610 / 5))  # population std (divides by n)
    assert summary["throughput_per_s"] == pytest.approx(10.0)


def test_percentiles_of_1_to_100_ms():
    stats = LatencyStats.from_seconds([0.001 * i for i in range(100, 0, -1)], wall_s=2.0)
    assert (stats.p50, stats.p95, stats.p99) == pytest.approx((50.5, 95.05, 99.01))
    assert stats.percentile(0) == pytest.approx(1.0) and stats.percentile(100) == pytest.approx(100.0)
    assert stats.throughput == pytest.approx(50.0)


def test_unknown_wall_time_gives_no_throughput_and_one_sample_no_spread():
    stats = LatencyStats.from_seconds([0.002])
    assert math.isnan(stats.throughput) and math.isnan(stats.summary()["throughput_per_s"])
    assert stats.summary()["std_ms"] == 0.0 and stats.p99 == pytest.approx(2.0)


def test_empty_samples_are_rejected():
    with pytest.raises(ValueError, match="no latency samples"):
        LatencyStats.from_seconds([])


def test_time_calls_times_the_n_calls_after_the_warmup():
    calls = []

    def call() -> None:
        calls.append(1)
        if len(calls) > 3:  # only the calls after the 3 warm-up calls do work
            time.sleep(0.02)

    stats = time_calls(call, n=20, warmup=3)
    assert stats.n == 20 and len(calls) == 23
    # If a warm-up call were timed, its near-zero duration would be the minimum. (A sleep never ends early.)
    assert min(stats.samples_ms) >= 20.0
    assert stats.wall_s >= 20 * 0.02


SLOW_S = 0.05


def test_interleaved_calls_time_each_call_in_turn_and_keep_its_own_rounds():
    order: list[str] = []
    slow_round = 3  # the slow call sleeps in this timed round only (after 2 warm-up rounds)

    def fast():
        order.append("fast")

    def slow():
        order.append("slow")
        if order.count("slow") == 2 + slow_round + 1:
            time.sleep(SLOW_S)

    stats = interleaved_calls({"fast": fast, "slow": slow}, n=6, warmup=2)
    assert order == ["fast", "slow"] * 8  # warm-up and timed rounds alternate call by call
    assert list(stats) == ["fast", "slow"] and stats["fast"].n == stats["slow"].n == 6
    # The sleep lands in the slow call's own sample of that round (a sleep never ends early), not in the other call's.
    assert stats["slow"].samples_ms[slow_round] >= SLOW_S * 1000
    assert int(np.argmax(stats["slow"].samples_ms)) == slow_round
    assert stats["fast"].samples_ms.max() < stats["slow"].samples_ms[slow_round] / 2
    with pytest.raises(ValueError, match="no calls"):
        interleaved_calls({})


def test_interleaved_calls_in_blocks_start_each_block_with_one_untimed_call():
    order: list[str] = []
    calls = {name: lambda name=name: order.append(name) for name in "abc"}
    stats = interleaved_calls(calls, n=5, warmup=1, block=3)
    # warm-up round; then per call one untimed call and a block of up to 3 timed calls
    assert "".join(order) == "abc" + "aaaa" + "bbbb" + "cccc" + "aaa" + "bbb" + "ccc"
    assert [s.n for s in stats.values()] == [5, 5, 5]


def test_paired_calls_return_first_s_stats_first():
    order: list[str] = []

    def first() -> None:
        order.append("a")
        time.sleep(0.02)

    def second() -> None:
        order.append("b")

    a, b = paired_calls(first, second, n=3, warmup=0)
    assert "".join(order) == "ababab"
    assert a.n == b.n == 3
    assert min(a.samples_ms) >= 20.0  # first's samples are first's: swapped, they would be near zero
    assert max(b.samples_ms) < 20.0


def overlap_app(concurrency: int, work_s: float = 0.0) -> tuple[Flask, dict[str, int]]:
    """A Flask app whose /work records how many requests are in flight at once (server side).

    Each request waits (at most 2 s) until `concurrency` requests have been in flight together once, so a client
    that really sends that many at once is not slowed down, and one that sends them one by one is caught; then it
    works for work_s seconds.
    """
    app = Flask("overlap")
    seen = {"requests": 0, "in_flight": 0, "peak": 0}
    lock = threading.Lock()
    reached = threading.Event()

    @app.get("/work")
    def work():
        with lock:
            seen["requests"] += 1
            seen["in_flight"] += 1
            seen["peak"] = max(seen["peak"], seen["in_flight"])
            if seen["in_flight"] >= concurrency:
                reached.set()
        reached.wait(2.0)
        time.sleep(work_s)
        with lock:
            seen["in_flight"] -= 1
        return {"ok": True}

    return app, seen


def test_http_latency_with_3_clients_has_3_requests_in_flight_at_once():
    app, seen = overlap_app(3)
    with serve(app) as server:
        stats = http_latency("GET", server.url + "/work", n=30, concurrency=3, warmup=1)
    assert stats.n == 30 and stats.concurrency == 3
    assert seen["requests"] == 30 + 3  # the timed requests and one warm-up per client
    assert seen["peak"] == 3  # concurrent, and not more clients than asked for


def test_http_latency_spreads_the_requests_evenly_over_the_clients():
    app = FastAPI()
    per_client: Counter[int] = Counter()  # each client keeps its connection open (uvicorn keeps it alive): its port
    lock = threading.Lock()

    @app.get("/ok")
    def ok(request: Request) -> dict[str, bool]:
        with lock:
            per_client[request.client.port] += 1
        return {"ok": True}

    with serve(app) as server:
        stats = http_latency("GET", server.url + "/ok", n=41, concurrency=4, warmup=1)
    assert stats.n == 41 and stats.concurrency == 4
    assert sorted(per_client.values()) == [11, 11, 11, 12]  # 41 timed requests split 10/10/10/11, plus 1 warm-up each


def test_sequential_http_latency_sends_one_request_at_a_time():
    # 5 ms of work per request: long enough for a second request to arrive if the client did not wait
    app, seen = overlap_app(1, work_s=0.005)
    with serve(app) as server:
        stats = http_latency("GET", server.url + "/work", n=10, warmup=2)
    assert stats.n == 10 and stats.concurrency == 1
    assert seen == {"requests": 12, "in_flight": 0, "peak": 1}
    assert min(stats.samples_ms) >= 5.0  # each sample spans the server's work


def test_http_latency_raises_on_a_wrong_status_and_the_table_has_one_row_per_label():
    app = Flask("bench")
    app.get("/ok")(lambda: {"ok": True})
    with serve(app) as server:
        with pytest.raises(RuntimeError, match="GET .*/missing answered 404"):
            http_latency("GET", server.url + "/missing", n=1, warmup=0)
        with pytest.raises(RuntimeError, match="GET .*/missing answered 404"):  # in a client's warm-up: no hang
            http_latency("GET", server.url + "/missing", n=6, concurrency=3, warmup=1)
        ok = http_latency("GET", server.url + "/ok", n=5, warmup=0)
    skewed = LatencyStats.from_seconds([ms / 1000 for ms in SKEWED_MS], wall_s=0.5)
    table = stats_table({"ok": ok, "skewed": skewed})
    assert list(table.index) == ["ok", "skewed"]
    assert table.loc["skewed", "median_ms"] == pytest.approx(3.0)
    assert table.loc["skewed", "mean_ms"] == pytest.approx(22.0)
    assert table.loc["ok", "n"] == 5


def test_pooled_runs_divide_all_calls_by_all_wall_time():
    fast = LatencyStats.from_seconds([0.1] * 4, wall_s=0.2, concurrency=8)  # 20 calls/s
    slow = LatencyStats.from_seconds([0.3] * 2, wall_s=0.4, concurrency=8)  # 5 calls/s
    both = pooled([fast, slow])
    assert both.n == 6 and both.concurrency == 8
    assert both.throughput == pytest.approx(10.0)  # not the mean of 20 and 5
    assert both.p50 == pytest.approx(100.0)
