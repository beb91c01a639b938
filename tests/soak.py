"""Soak runner for the app tests: many concurrent clients, good and bad requests mixed, bounded in count."""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import psutil
import requests


@dataclass(frozen=True)
class Call:
    """One request of the mix: how to send it and whether a 2xx answer is required."""

    name: str
    method: str
    path: str
    good: bool
    kwargs: dict = field(default_factory=dict)


@dataclass
class SoakReport:
    """What a soak run observed."""

    requests: int = 0
    statuses: Counter = field(default_factory=Counter)
    failed_good: list[str] = field(default_factory=list)  # a good request that did not get a 2xx
    server_errors: list[str] = field(default_factory=list)  # any 5xx
    accepted_bad: list[str] = field(default_factory=list)  # a bad request that got a 2xx
    answer_problems: list[str] = field(default_factory=list)  # what `check` found: a wrong answer or error body
    client_errors: list[str] = field(default_factory=list)
    rss_start_mb: float = 0.0
    rss_end_mb: float = 0.0

    @property
    def rss_growth_mb(self) -> float:
        """Resident-memory growth of this process (which hosts the server threads) over the run."""
        return self.rss_end_mb - self.rss_start_mb

    def summary(self) -> str:
        """One line for the test report."""
        codes = ", ".join(f"{code}×{n}" for code, n in sorted(self.statuses.items()))
        return (
            f"{self.requests} requests ({codes}); RSS {self.rss_start_mb:.0f} → {self.rss_end_mb:.0f} MB "
            f"({self.rss_growth_mb:+.1f} MB)"
        )


def _rss_mb() -> float:
    """Resident set size of this process in MB."""
    return psutil.Process().memory_info().rss / 2**20


def soak(
    base_url: str,
    mix: Sequence[Call],
    clients: int = 8,
    per_client: int = 125,
    seed: int = 0,
    warmup: int = 50,
    check: Callable[[Call, requests.Response], str | None] | None = None,
) -> SoakReport:
    """Send clients × per_client requests drawn from mix, concurrently, and record every anomaly."""
    report = SoakReport()
    lock = threading.Lock()
    with requests.Session() as session:
        for i in range(warmup):
            call = mix[i % len(mix)]
            session.request(call.method, base_url + call.path, timeout=30, **call.kwargs)
    report.rss_start_mb = _rss_mb()

    def client(index: int) -> None:
        rng = random.Random(seed + index)
        with requests.Session() as session:
            for _ in range(per_client):
                call = rng.choice(mix)
                try:
                    response = session.request(call.method, base_url + call.path, timeout=30, **call.kwargs)
                except requests.RequestException as exc:
                    with lock:
                        report.requests += 1
                        report.client_errors.append(f"{call.name}: {type(exc).__name__}: {exc}")
                    continue
                problem = check(call, response) if check else None
                with lock:
                    report.requests += 1
                    report.statuses[response.status_code] += 1
                    if response.status_code >= 500:
                        report.server_errors.append(f"{call.name}: {response.status_code} {response.text[:200]}")
                    elif call.good and not response.ok:
                        report.failed_good.append(f"{call.name}: {response.status_code} {response.text[:200]}")
                    elif not call.good and response.ok:
                        report.accepted_bad.append(f"{call.name}: accepted with {response.status_code}")
                    if problem:
                        report.answer_problems.append(f"{call.name}: {problem}")

    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(client, range(clients)))
    report.rss_end_mb = _rss_mb()
    return report


def assert_clean(report: SoakReport, expected: int, max_growth_mb: float = 150.0) -> None:
    """Fail with the first anomalies when the soak run was not clean."""
    assert report.requests == expected, f"{report.requests} of {expected} requests sent: {report.summary()}"
    assert not report.client_errors, report.client_errors[:5]
    assert not report.server_errors, report.server_errors[:5]
    assert not report.failed_good, report.failed_good[:5]
    assert not report.accepted_bad, report.accepted_bad[:5]
    assert not report.answer_problems, report.answer_problems[:5]
    assert report.rss_growth_mb < max_growth_mb, report.summary()
