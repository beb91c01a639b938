"""bench_batching: the goal row divides the best served throughput by the best in-process one; the in-process side
prepares every image from its bytes as a request does; the served side batches up to max_batch; measuring covers every
batch size and leaves no server running."""

from __future__ import annotations

import dataclasses
import math
import threading
from collections.abc import Callable

import numpy as np
import pytest
from hardening import listening_ports
from helpers import settled_thread_count
from test_image_api_batching import Watched  # a real backend that records each batch's size

from bench.bench_batching import (
    BATCH_SIZES,
    CLIENTS,
    Measured,
    in_process_batch,
    measure,
    rows_for,
    rows_from,
    served_run,
)
from bench.report import REPORT_ONLY, Goal, Row
from course_lib.bench import LatencyStats
from course_lib.vision import sample_images
from course_lib.vision.backends import make_backend

PHOTO = sample_images()["china.jpg"]
# Images/s per batch size: neither side's best is its first size, the two bests are at different sizes (4 and 8), and
# every wrong pairing (inverted, first of each, best of one side with the first of the other, same size on both
# sides) gives a ratio other than 36 / 40.
IN_PROCESS = {1: 20.0, 4: 40.0, 8: 32.0}
SERVED = {1: 10.0, 4: 30.0, 8: 36.0}
SERVED_MS = {1: (90.0, 200.0), 4: (70.0, 150.0), 8: (60.0, 120.0)}

RowsFn = Callable[..., list[Row]]


@pytest.fixture(scope="module")
def int8_backend(classifier):
    return make_backend(classifier, "onnx-int8")


def check_rows(rows_fn: RowsFn) -> None:
    """The goal is on best served / best in-process, the metric names both settings, the rest is report only."""
    rows = rows_fn("X", IN_PROCESS, SERVED, SERVED_MS)
    goal, *others = rows
    assert goal.goal == Goal(">=", 0.9) and goal.unit == "×"
    assert goal.value == pytest.approx(36.0 / 40.0), goal
    assert "best max_batch=8" in goal.metric and "best batch=4" in goal.metric, goal.metric
    assert all(row.verdict == REPORT_ONLY for row in others)
    throughputs = [(row.metric.rsplit(" ", 1)[1], row.value) for row in others if row.unit == "img/s"]
    expected = [(f"batch={b}", v) for b, v in IN_PROCESS.items()] + [(f"max_batch={b}", v) for b, v in SERVED.items()]
    assert throughputs == expected
    latencies = [(row.metric.split(": ")[1], row.value) for row in others if row.unit == "ms"]
    assert latencies == [("served p50, max_batch=8", 60.0), ("served p99, max_batch=8", 120.0)]


def inverted(label, in_process, served, served_ms):
    """A wrong rows function: in-process / served."""
    return rows_for(label, served, in_process, served_ms)


def first_sizes(label, in_process, served, served_ms):
    """A wrong rows function: the first batch size of each side instead of the best."""
    return rows_for(label, {1: in_process[1]}, {1: served[1]}, served_ms)


def test_the_goal_row_divides_the_best_served_throughput_by_the_best_in_process_one():
    check_rows(rows_for)


@pytest.mark.parametrize("wrong", [inverted, first_sizes])
def test_the_rows_check_rejects_an_inverted_ratio_and_the_first_batch_size(wrong: RowsFn):
    with pytest.raises(AssertionError):
        check_rows(wrong)


def test_measured_batch_times_become_images_per_second_and_served_runs_requests_per_wall_second():
    batch_ms = {1: 50.0, 4: 100.0, 8: 250.0}  # 20, 40 and 32 images/s
    in_process = {b: LatencyStats(np.full(5, ms), wall_s=5 * ms / 1000) for b, ms in batch_ms.items()}
    served = {b: LatencyStats(np.full(int(rate), 200.0), wall_s=1.0, concurrency=CLIENTS) for b, rate in SERVED.items()}
    goal, *others = rows_from("X", Measured(in_process, served))
    assert goal.value == pytest.approx(36.0 / 40.0) and "best batch=4" in goal.metric
    throughputs = [row.value for row in others if row.unit == "img/s"]
    assert throughputs == pytest.approx([*IN_PROCESS.values(), *SERVED.values()])


def test_in_process_batches_prepare_every_image_from_its_bytes(classifier, int8_backend):
    prepared: list[int] = []

    def counting(image):
        prepared.append(1)
        return classifier.preprocess(image)

    counted = dataclasses.replace(classifier, preprocess=counting)
    backend = Watched(int8_backend)
    stats = in_process_batch(counted, backend, PHOTO, batch=4, n=3, warmup=1)
    assert stats.n == 3
    assert backend.sizes == [4] * 4  # one network call per batch, warm-up included
    assert len(prepared) == 4 * 4  # decoded and preprocessed per image, not once per batch


@pytest.mark.parametrize("max_batch", [1, 8])
def test_served_runs_batch_up_to_max_batch_from_all_clients(classifier, int8_backend, max_batch):
    backend = Watched(int8_backend)
    stats = served_run(classifier, backend, PHOTO, max_batch=max_batch, n=32, warmup=1)
    assert stats.n == 32 and stats.concurrency == CLIENTS and math.isfinite(stats.throughput)
    requests_made = 32 + CLIENTS  # timed requests and one warm-up request per client
    assert sum(backend.sizes) == requests_made + 1  # + create_app's warm-up call
    assert max(backend.sizes) <= max_batch
    if max_batch > 1:
        assert max(backend.sizes) > 1, backend.sizes  # 8 clients at once do fill batches


def test_measure_covers_every_batch_size_in_rounds_and_leaves_no_server_running(classifier, int8_backend):
    ports, threads = listening_ports(), threading.active_count()
    measured = measure(classifier, int8_backend, PHOTO, n_in_process=2, n_served=8, rounds=2)
    assert sorted(measured.in_process) == sorted(measured.served) == sorted(BATCH_SIZES)
    for b in BATCH_SIZES:
        assert measured.in_process[b].n == 2 * 2
        assert measured.served[b].n == 8 * 2 and measured.served[b].concurrency == CLIENTS
        assert measured.served[b].throughput > 0
    assert listening_ports() <= ports
    assert settled_thread_count(threads) <= threads
