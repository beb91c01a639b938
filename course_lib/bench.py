"""Latency measurement: warm-up, sequential and concurrent clients, percentiles, progress bar, plots."""

from __future__ import annotations

import statistics
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
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


def time_calls(
    fn: Callable[[], Any], n: int = 100, warmup: int = 5, progress: bool = False, desc: str | None = None
) -> LatencyStats:
    """Call fn() warmup + n times in this thread and return the latency of the n timed calls."""
    for _ in range(warmup):
        fn()
    durations = []
    started = time.perf_counter()
    for _ in tqdm(range(n), desc=desc, disable=not progress, leave=False):
        t0 = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - t0)
    return LatencyStats.from_seconds(durations, time.perf_counter() - started)


def paired_calls(
    first: Callable[[], Any],
    second: Callable[[], Any],
    n: int = 100,
    warmup: int = 5,
    block: int = 1,
    progress: bool = False,
    desc: str | None = None,
) -> tuple[LatencyStats, LatencyStats]:
    """Time first() and second() alternately so both see the same machine load; return both stats.

    block=1 alternates call by call. With block > 1 they alternate in blocks of `block` timed calls, each block
    after one untimed call: thread pools (PyTorch's OpenMP, onnxruntime) keep spinning for a moment after a call
    and would slow down the other side's first call.
    """
    a: list[float] = []
    b: list[float] = []
    for _ in range(warmup):
        first()
        second()
    with tqdm(total=2 * n, desc=desc, disable=not progress, leave=False) as bar:
        while len(a) < n:
            for fn, samples in ((first, a), (second, b)):
                if block > 1:
                    fn()
                for _ in range(min(block, n - len(samples))):
                    t0 = time.perf_counter()
                    fn()
                    samples.append(time.perf_counter() - t0)
                    bar.update()
    return LatencyStats.from_seconds(a), LatencyStats.from_seconds(b)


def concurrent_calls(
    make_call: Callable[[], Callable[[], Any]],
    n: int = 100,
    concurrency: int = 4,
    warmup: int = 2,
    progress: bool = False,
    desc: str | None = None,
) -> LatencyStats:
    """Run n calls spread over `concurrency` threads; make_call() builds one call function per thread."""
    per_worker = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]
    durations: list[float] = []
    lock = threading.Lock()
    bar = tqdm(total=n, desc=desc, disable=not progress, leave=False)
    ready = threading.Barrier(concurrency + 1)

    def worker(count: int) -> None:
        call = make_call()
        for _ in range(warmup):
            call()
        ready.wait()
        mine = []
        for _ in range(count):
            t0 = time.perf_counter()
            call()
            mine.append(time.perf_counter() - t0)
            bar.update()
        with lock:
            durations.extend(mine)

    with ThreadPoolExecutor(concurrency) as pool:
        futures = [pool.submit(worker, count) for count in per_worker]
        ready.wait()
        started = time.perf_counter()
        for future in futures:
            future.result()
        wall = time.perf_counter() - started
    bar.close()
    return LatencyStats.from_seconds(durations, wall, concurrency)


def http_caller(
    method: str, url: str, expect_status: int = 200, **request_kwargs: Any
) -> Callable[[], Callable[[], Any]]:
    """A make_call factory: each thread gets its own requests.Session; a wrong status raises."""

    def make_call() -> Callable[[], Any]:
        session = requests.Session()

        def call() -> requests.Response:
            response = session.request(method, url, timeout=30, **request_kwargs)
            if response.status_code != expect_status:
                raise RuntimeError(f"{method} {url} answered {response.status_code}: {response.text[:200]}")
            return response

        return call

    return make_call


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
    """End-to-end latency of n HTTP requests with `concurrency` clients (1 = the source's sequential loop)."""
    make_call = http_caller(method, url, **request_kwargs)
    if concurrency == 1:
        return time_calls(make_call(), n=n, warmup=warmup, progress=progress, desc=desc)
    return concurrent_calls(make_call, n=n, concurrency=concurrency, warmup=warmup, progress=progress, desc=desc)


def stats_table(results: dict[str, LatencyStats]) -> Any:
    """A pandas DataFrame with one row per labelled LatencyStats."""
    import pandas as pd

    return pd.DataFrame({label: stats.summary() for label, stats in results.items()}).T


def plot_latency(results: dict[str, LatencyStats], title: str = "Latency") -> Any:
    """Histogram and CDF of several latency distributions side by side; returns the matplotlib Figure."""
    import matplotlib.pyplot as plt

    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(11, 4))
    for label, stats in results.items():
        s = np.sort(stats.samples_ms)
        hist.hist(s, bins=30, alpha=0.6, label=label)
        cdf.plot(s, np.arange(1, len(s) + 1) / len(s), label=label)
    hist.set(xlabel="latency (ms)", ylabel="requests", title=f"{title}: histogram")
    cdf.set(xlabel="latency (ms)", ylabel="fraction ≤ x", title=f"{title}: CDF")
    for q in (0.5, 0.95, 0.99):
        cdf.axhline(q, color="grey", lw=0.5, ls="--")
    hist.legend()
    cdf.legend()
    fig.tight_layout()
    return fig
