"""The event-loop pitfall of notebook 03: /health p99 while 4 clients hammer a slow /predict, blocking vs correct.

Each /predict makes the real SimpleNN call plus WORK_S of extra work standing for a heavier model, of three kinds
(course_lib.apps.async_pitfall.WORKS): a sleep, as in notebook 03 (it releases the GIL and uses no core), torch matrix
products (a busy core, as real inference; torch releases the GIL inside each product), and a pure-Python loop (a busy
core holding the GIL). Moving the work off the event loop (a `def` endpoint or `run_in_threadpool`) is expected to
cut /health's p99 several-fold for the first two; for GIL-holding work the event loop thread still waits for the GIL
at every switch interval, so that ratio is reported without a goal.
"""

from __future__ import annotations

from tqdm.auto import tqdm

from bench.report import Goal, Row
from course_lib.apps.async_pitfall import STYLES, WORK_DESCRIPTIONS, WORKS, create_pitfall_app, health_under_load
from course_lib.models import train_simple_nn
from course_lib.servers import serve

NAME = "async_pitfall"
WORK_S = 0.05  # 50 ms of extra work per /predict
CLIENTS = 4
# Blocking p99 should be at least 3 × the fixed styles' p99 for the sleep and for work that releases the GIL
# (notebook 03 asserts the same effect as counts: most /health calls wait longer than one inference when blocking,
# fewer than half when fixed). GIL-holding work gets no goal: a thread does not give the event loop the GIL back.
GOALS: dict[str, Goal | None] = {"sleep": Goal(">=", 3.0), "torch": Goal(">=", 3.0), "python": None}


def measure(n: int) -> dict[tuple[str, str], float]:
    """/health p99 (ms) under load for every (work, style) pair, one server at a time."""
    net, _ = train_simple_nn()
    pairs = [(work, style) for work in WORKS for style in STYLES]
    p99 = {}
    for work, style in tqdm(pairs, desc="work kinds × endpoint styles", leave=False):
        with serve(create_pitfall_app(style, net, work_s=WORK_S, work=work)) as server:
            p99[work, style] = health_under_load(server.url, n=n, clients=CLIENTS).p99
    return p99


def rows_for(p99: dict[tuple[str, str], float]) -> list[Row]:
    """Per work kind: the three p99s, then blocking ÷ def and blocking ÷ run_in_threadpool with that kind's goal."""
    rows = []
    for work in WORKS:
        what = f"{WORK_S * 1000:.0f} ms of {WORK_DESCRIPTIONS[work]}"
        rows += [
            Row(NAME, f"/health p99, predict as {style} ({CLIENTS} clients, {what})", p99[work, style], "ms")
            for style in STYLES
        ]
        rows += [
            Row(
                NAME,
                f"/health p99 ratio, {work} work: blocking async def ÷ {label}",
                p99[work, "blocking"] / p99[work, style],
                goal=GOALS[work],
            )
            for style, label in (("def", "def endpoint"), ("threadpool", "run_in_threadpool"))
        ]
    return rows


def run(quick: bool = False) -> list[Row]:
    """Measure /health latency under load for each work kind and endpoint style; report p99s and the ratios."""
    return rows_for(measure(n=20 if quick else 60))


if __name__ == "__main__":
    for row in run():
        print(" | ".join(row.cells()))
