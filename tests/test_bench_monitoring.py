"""bench_monitoring's rows divide each shadow mode by no shadow, the right way round (the measuring run is
`make bench`; tests/test_releases.py shows over real HTTP that a slow shadow never makes a client wait)."""

import pytest

from bench.bench_monitoring import rows_for
from course_lib.bench import LatencyStats


def stats(ms: float, slow_ms: float | None = None) -> LatencyStats:
    values = [ms / 1000] * 99 + [(slow_ms or ms) / 1000]
    return LatencyStats.from_seconds(values, wall_s=1.0, concurrency=1)


def test_rows_divide_each_shadow_by_no_shadow():
    results = {
        "no shadow": stats(2.0, 4.0),
        "shadow, same model": stats(3.0, 4.0),
        "shadow, slow model": stats(2.5, 8.0),
        "shadow, crashing model": stats(2.2, 4.0),
    }
    rows = {row.metric: row for row in rows_for(results, scrape_ms=1.5, label="1 client")}
    assert rows["iris FastAPI, 1 client: p50 shadow, same model / no shadow"].value == pytest.approx(1.5)
    assert rows["iris FastAPI, 1 client: p50 shadow, slow model / no shadow"].value == pytest.approx(1.25)
    assert rows["iris FastAPI, 1 client: p50 shadow, crashing model / no shadow"].value == pytest.approx(1.1)
    assert rows["iris FastAPI, 1 client: no shadow p50"].value == pytest.approx(2.0)
    assert rows["GET /metrics p50"].value == 1.5 and rows["GET /metrics p50"].unit == "ms"
    assert all(row.goal is None for row in rows.values())
