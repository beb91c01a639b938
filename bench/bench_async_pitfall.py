"""The event-loop pitfall of notebook 03: /health p99 while 4 clients hammer a slow /predict, blocking vs correct."""

from __future__ import annotations

from tqdm.auto import tqdm

from bench.report import Row
from course_lib.apps.async_pitfall import STYLES, create_pitfall_app, health_under_load
from course_lib.models import train_simple_nn
from course_lib.servers import serve

WORK_S = 0.05  # each /predict takes the real SimpleNN call plus 50 ms of blocking work (a heavier model)
CLIENTS = 4


def run(quick: bool = False) -> list[Row]:
    """Measure /health latency under load for each endpoint style in one run; report p99s and the ratios."""
    net, _ = train_simple_nn()
    n = 20 if quick else 60
    p99 = {}
    for style in tqdm(STYLES, desc="endpoint styles", leave=False):
        with serve(create_pitfall_app(style, net, work_s=WORK_S)) as server:
            p99[style] = health_under_load(server.url, n=n, clients=CLIENTS).p99
    rows = [Row("async_pitfall", f"/health p99, predict as {style} ({CLIENTS} clients, {WORK_S * 1000:.0f} ms work)", value, "ms")
            for style, value in p99.items()]
    rows.append(Row("async_pitfall", "/health p99 ratio: blocking async def ÷ def endpoint", p99["blocking"] / p99["def"], "×", "≫ 1"))
    rows.append(Row("async_pitfall", "/health p99 ratio: blocking async def ÷ run_in_threadpool", p99["blocking"] / p99["threadpool"], "×", "≫ 1"))
    return rows


if __name__ == "__main__":
    for row in run():
        print(" | ".join(row.cells()))
