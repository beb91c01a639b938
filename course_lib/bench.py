"""Latency measurement: warm-up, sequential and concurrent clients, percentiles, progress bar, plots, and a headless
locust run in a subprocess."""

from __future__ import annotations

import contextlib
import json
import math
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import requests
from tqdm import TqdmWarning

with warnings.catch_warnings():
    # Inside Jupyter without ipywidgets, tqdm.auto warns "IProgress not found" and uses its text bar; that is fine.
    warnings.filterwarnings("ignore", message="IProgress not found", category=TqdmWarning)
    from tqdm.auto import tqdm


@dataclass(frozen=True)
class LatencyStats:
    """Summary of latency samples in milliseconds (the source's mean/median/min/max/std/P95/P99)."""

    samples_ms: np.ndarray = field(repr=False)
    wall_s: float = float("nan")
    concurrency: int = 1

    @classmethod
    def from_seconds(cls, seconds: Sequence[float], wall_s: float = float("nan"), concurrency: int = 1) -> LatencyStats:
        """Build from per-call durations in seconds."""
        if len(seconds) == 0:
            raise ValueError("no latency samples")
        return cls(np.asarray(seconds, dtype=float) * 1000.0, wall_s, concurrency)

    @property
    def n(self) -> int:
        """Number of samples."""
        return len(self.samples_ms)

    def percentile(self, q: float) -> float:
        """The q-th percentile in ms (linear interpolation, as numpy)."""
        return float(np.percentile(self.samples_ms, q))

    @property
    def p50(self) -> float:
        """Median latency in ms."""
        return self.percentile(50)

    @property
    def p95(self) -> float:
        """95th percentile in ms."""
        return self.percentile(95)

    @property
    def p99(self) -> float:
        """99th percentile in ms."""
        return self.percentile(99)

    @property
    def throughput(self) -> float:
        """Completed calls per second of wall time (nan when the wall time is unknown)."""
        return self.n / self.wall_s if self.wall_s > 0 else float("nan")

    def summary(self) -> dict[str, float]:
        """The source's statistics (ms) plus throughput, as a dict ready for a DataFrame."""
        s = self.samples_ms
        return {
            "n": self.n,
            "mean_ms": float(s.mean()),
            "median_ms": self.p50,
            "min_ms": float(s.min()),
            "max_ms": float(s.max()),
            "std_ms": float(statistics.pstdev(s)) if self.n > 1 else 0.0,
            "p95_ms": self.p95,
            "p99_ms": self.p99,
            "throughput_per_s": self.throughput,
        }

    def __str__(self) -> str:
        d = self.summary()
        return (
            f"n={d['n']} mean={d['mean_ms']:.2f}ms median={d['median_ms']:.2f}ms min={d['min_ms']:.2f}ms "
            f"max={d['max_ms']:.2f}ms std={d['std_ms']:.2f}ms p95={d['p95_ms']:.2f}ms p99={d['p99_ms']:.2f}ms"
        )


def pooled(runs: Sequence[LatencyStats]) -> LatencyStats:
    """Several runs as one: all samples, the summed wall time (so throughput = all calls / all wall time)."""
    samples = np.concatenate([run.samples_ms for run in runs])
    return LatencyStats(samples, sum(run.wall_s for run in runs), runs[0].concurrency)


def _progress_bar(total: int, progress: bool, desc: str | None) -> tqdm:
    """A transient tqdm bar of `total` steps, shown only when progress is true."""
    return tqdm(total=total, desc=desc, disable=not progress, leave=False)


def _durations(fn: Callable[[], Any], count: int, bar: tqdm) -> list[float]:
    """Call fn() count times; return each call's duration in seconds, one bar step per call."""
    durations = []
    for _ in range(count):
        started = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - started)
        bar.update()
    return durations


def time_calls(
    fn: Callable[[], Any], n: int = 100, warmup: int = 5, progress: bool = False, desc: str | None = None
) -> LatencyStats:
    """Call fn() warmup + n times in this thread and return the latency of the n timed calls."""
    for _ in range(warmup):
        fn()
    started = time.perf_counter()
    with _progress_bar(n, progress, desc) as bar:
        durations = _durations(fn, n, bar)
    return LatencyStats.from_seconds(durations, time.perf_counter() - started)


def interleaved_calls(
    calls: Mapping[str, Callable[[], Any]],
    n: int = 100,
    warmup: int = 5,
    block: int = 1,
    progress: bool = False,
    desc: str | None = None,
) -> dict[str, LatencyStats]:
    """Time every call n times, taking turns, so all see the same machine load; return each one's latency by name.

    Taking turns is what makes the results comparable: a change of load (another program, a CPU that throttles)
    during the run hits every call alike, where timing one call after the other would give it to whichever ran then.
    With block=1 the calls take turns call by call, and sample i of every result comes from round i, so per-round
    sums and differences can be taken.

    block > 1 is for calls that run on a thread pool, as PyTorch (its OpenMP team) and onnxruntime (its intra-op
    pool) do. When a call returns, the pool's threads do not sleep at once: they keep spinning on their cores for a
    moment, waiting for more work (OpenMP's OMP_WAIT_POLICY, onnxruntime's "session.intra_op.allow_spinning"). A call
    of the other runtime made in that moment finds those cores busy; on a machine with few cores its own threads
    wait for the scheduler, and the wait is counted against it. Call by call, each side would be timed against the
    other's spinning. So with block > 1 the calls take turns in blocks of `block` timed calls, each block after one
    untimed call, during which the other runtime's threads go idle.
    """
    if not calls:
        raise ValueError("no calls to time")
    for _ in range(warmup):
        for fn in calls.values():
            fn()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    with _progress_bar(len(calls) * n, progress, desc) as bar:
        for done in range(0, n, block):
            for name, fn in calls.items():
                if block > 1:
                    fn()
                samples[name] += _durations(fn, min(block, n - done), bar)
    return {name: LatencyStats.from_seconds(seconds) for name, seconds in samples.items()}


def paired_calls(
    first: Callable[[], Any], second: Callable[[], Any], **options: Any
) -> tuple[LatencyStats, LatencyStats]:
    """interleaved_calls of first and second, returned as a pair; options are interleaved_calls' (n, warmup, block…)."""
    stats = interleaved_calls({"first": first, "second": second}, **options)
    return stats["first"], stats["second"]


def _in_threads(
    make_call: Callable[[], Callable[[], Any]], n: int, concurrency: int, warmup: int, bar: tqdm
) -> tuple[list[float], float]:
    """n calls spread over `concurrency` threads, each with its own make_call(); the durations and the wall time."""
    per_thread = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]
    durations: list[float] = []
    lock = threading.Lock()
    ready = threading.Barrier(concurrency + 1)

    def client(count: int) -> None:
        try:
            call = make_call()
            for _ in range(warmup):
                call()
        except BaseException:
            ready.abort()  # the other clients and this thread stop waiting; the error is raised below
            raise
        ready.wait()
        mine = _durations(call, count, bar)
        with lock:
            durations.extend(mine)

    with ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(client, count) for count in per_thread]
        with contextlib.suppress(threading.BrokenBarrierError):
            ready.wait()
        started = time.perf_counter()
        errors = [error for error in (f.exception() for f in futures) if error is not None]
        wall = time.perf_counter() - started
    if errors:
        raise next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0])
    return durations, wall


def _http_call(method: str, url: str, expect_status: int = 200, **request_kwargs: Any) -> Callable[[], Any]:
    """One client's call: its own requests.Session, one request per call; a wrong status raises."""
    session = requests.Session()

    def call() -> requests.Response:
        response = session.request(method, url, timeout=30, **request_kwargs)
        if response.status_code != expect_status:
            raise RuntimeError(f"{method} {url} answered {response.status_code}: {response.text[:200]}")
        return response

    return call


def http_latency(
    method: str,
    url: str,
    n: int = 100,
    concurrency: int = 1,
    warmup: int = 5,
    progress: bool = False,
    desc: str | None = None,
    **request_kwargs: Any,
) -> LatencyStats:
    """End-to-end latency of n HTTP requests with `concurrency` clients (1 = the source's sequential loop).

    Each client has its own session and sends its warm-up requests first; the n timed requests are spread evenly.
    """
    if concurrency == 1:
        return time_calls(_http_call(method, url, **request_kwargs), n, warmup, progress, desc)
    with _progress_bar(n, progress, desc) as bar:
        durations, wall = _in_threads(lambda: _http_call(method, url, **request_kwargs), n, concurrency, warmup, bar)
    return LatencyStats.from_seconds(durations, wall, concurrency)


def stats_table(results: dict[str, LatencyStats]) -> Any:
    """A pandas DataFrame with one row per labelled LatencyStats."""
    import pandas as pd

    return pd.DataFrame({label: stats.summary() for label, stats in results.items()}).T


def plot_latency(results: dict[str, LatencyStats], title: str = "レイテンシ") -> Any:
    """Histogram and CDF of several latency distributions side by side; returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    from course_lib.plotting import use_japanese_font

    use_japanese_font()

    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 4))
    for label, stats in results.items():
        s = np.sort(stats.samples_ms)
        hist.hist(s, bins=30, alpha=0.6, label=label)
        cdf.plot(s, np.arange(1, len(s) + 1) / len(s), label=label)
    hist.set(xlabel="レイテンシ (ms)", ylabel="リクエスト数", title=f"{title}: ヒストグラム")
    cdf.set(xlabel="レイテンシ (ms)", ylabel="x 以下の割合", title=f"{title}: 累積分布 (CDF)")
    for q in (0.5, 0.95, 0.99):
        cdf.axhline(q, color="grey", lw=0.5, ls="--")
    hist.legend()
    cdf.legend()
    fig.tight_layout()
    return fig


@dataclass(frozen=True)
class LocustResult:
    """The final statistics of a headless locust run, all endpoints together (locust's "Aggregated" row)."""

    requests: int
    failures: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    throughput: float  # requests per second, from the first request to the last
    by_endpoint: dict[str, int]  # "POST /predict" -> requests


def _histogram_percentile(counts: Mapping[float, int], q: float) -> float:
    """The q-th percentile (0-100) of a {value: count} histogram: the smallest value with q % of counts at or below."""
    total = sum(counts.values())
    if total == 0:
        return float("nan")
    needed, seen = math.ceil(total * q / 100), 0
    for value in sorted(counts):
        seen += counts[value]
        if seen >= needed:
            return value
    return max(counts)


def locust_result(entries: Sequence[Mapping[str, Any]]) -> LocustResult:
    """Aggregate the entries of locust's --json-file (one per endpoint, response times as a {ms: count} histogram)."""
    histogram: dict[float, int] = {}
    for entry in entries:
        for ms, count in entry["response_times"].items():
            histogram[float(ms)] = histogram.get(float(ms), 0) + count
    requests_made = sum(entry["num_requests"] for entry in entries)
    span = max((e["last_request_timestamp"] for e in entries), default=0.0) - min(
        (e["start_time"] for e in entries), default=0.0
    )
    return LocustResult(
        requests=requests_made,
        failures=sum(entry["num_failures"] for entry in entries),
        p50_ms=_histogram_percentile(histogram, 50),
        p95_ms=_histogram_percentile(histogram, 95),
        p99_ms=_histogram_percentile(histogram, 99),
        throughput=requests_made / span if span > 0 else float("nan"),
        by_endpoint={f"{e['method']} {e['name']}": e["num_requests"] for e in entries},
    )


def run_locust(locustfile: str | Path, host: str, users: int, seconds: int) -> LocustResult:
    """Run locust headless for `seconds` with `users` users against host, in a subprocess; its final statistics.

    A subprocess, never this process: importing locust patches the standard library with gevent. The figures come
    from --json-file, which locust writes when it stops; its --csv files are snapshots rewritten once a second and
    can miss the last second. Raises RuntimeError (with locust's stderr) when locust stopped without statistics.
    """
    with tempfile.TemporaryDirectory(prefix="course-locust-") as tmp:
        report = Path(tmp) / "stats"
        command = [
            sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", str(users), "-r", str(users),
            "-t", f"{seconds}s", "--host", host, "--json-file", str(report), "--only-summary", "--loglevel", "ERROR",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 90, check=False)
        written = report.with_suffix(".json")
        if not written.exists():
            message = f"locust stopped without statistics (exit code {done.returncode}):\n{done.stderr[-800:]}"
            raise RuntimeError(message)
        return locust_result(json.loads(written.read_text()))
