"""bench_ray_serve's rows put Serve's overhead and the replica ratio the right way round (the measuring run needs
Ray and is exercised by `make bench`; course_lib.ray_serving has its own real-HTTP test)."""

import pytest

from bench.bench_ray_serve import rows_for
from course_lib.bench import LatencyStats


def stats(ms: float, n: int = 10, wall_s: float = 1.0) -> LatencyStats:
    return LatencyStats.from_seconds([ms / 1000] * n, wall_s=wall_s, concurrency=8)


def test_rows_subtract_and_divide_uvicorn_from_serve_and_one_replica_from_two_and_batched():
    rows = {
        row.metric: row
        for row in rows_for(stats(4.0), stats(7.0), stats(50, n=40), stats(50, n=60), stats(50, n=50, wall_s=0.5))
    }
    assert rows["digits, 1 client: Ray Serve p50 - uvicorn p50"].value == pytest.approx(3.0)
    assert rows["digits, 1 client: Ray Serve p50 / uvicorn p50"].value == pytest.approx(1.75)
    assert rows["digits, 8 clients: throughput 2 replicas / 1 replica"].value == pytest.approx(1.5)
    batched = "digits, 8 clients, 1 replica: throughput @serve.batch (max_batch 8) / unbatched"
    assert rows[batched].value == pytest.approx(2.5)  # 100 req/s over 40 req/s
    assert [row.unit for row in rows.values()] == ["ms", "×", "×", "×", "ms", "ms", "req/s", "req/s", "req/s"]
