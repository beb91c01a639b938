"""course_lib.apps.async_pitfall's kinds of work and load helper, and the goals bench_async_pitfall judges."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from flask import Flask

from bench.bench_async_pitfall import GOALS, rows_for
from bench.report import MET, REPORT_ONLY, UNMET, Goal
from course_lib.apps.async_pitfall import STYLES, WORKS, create_pitfall_app, do_work, health_under_load
from course_lib.servers import serve

GOOD = [5.1, 3.5, 1.4, 0.2]


@pytest.mark.parametrize(("work", "uses_cpu"), [("sleep", False), ("torch", True), ("python", True)])
def test_each_kind_of_work_lasts_its_time_and_only_the_cpu_kinds_use_a_core(work, uses_cpu):
    seconds = 0.5
    wall, cpu = time.perf_counter(), time.process_time()
    do_work(work, seconds)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert wall >= seconds
    # CPU time, not wall time: a sleep uses next to none (well under 1 ms); a busy loop gets far more than 5 % of a
    # core even when a dozen processes share the machine's two.
    assert (cpu > 0.05 * seconds) is uses_cpu, f"{work}: {cpu:.3f} s of CPU in {wall:.3f} s"


def test_unknown_work_is_refused():
    with pytest.raises(ValueError, match="work must be one of"):
        do_work("spin", 0.01)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="work must be one of"):
        create_pitfall_app("def", work="spin")  # type: ignore[arg-type]


@pytest.mark.parametrize("work", WORKS)
def test_every_kind_of_work_answers_with_the_model_after_its_work(net, work):
    with serve(create_pitfall_app("blocking", net, work_s=0.05, work=work)) as server, requests.Session() as http:
        started = time.perf_counter()
        answer = http.post(server.url + "/predict", json={"features": GOOD}, timeout=30)
        took = time.perf_counter() - started
        assert answer.status_code == 200 and answer.json()["class_name"] == "setosa"
        assert took >= 0.05
        assert http.get(server.url + "/health", timeout=10).json() == {"status": "healthy", "style": "blocking"}


def load_app(predict_s: float, status: int = 200) -> tuple[Flask, dict[str, list[int] | int]]:
    """A threaded Flask app: /predict takes predict_s; /health records how many /predict answers had gone out."""
    app = Flask("load")
    seen: dict = {"answered": 0, "at_health": []}
    lock = threading.Lock()

    @app.post("/predict")
    def predict():
        time.sleep(predict_s)
        with lock:
            seen["answered"] += 1
        return {"ok": status == 200}, status

    @app.get("/health")
    def health():
        with lock:
            seen["at_health"].append(seen["answered"])
        return {"status": "healthy"}

    return app, seen


def _hammers() -> list[threading.Thread]:
    """The load helper's client threads still alive."""
    return [thread for thread in threading.enumerate() if "hammer" in thread.name]


def test_health_under_load_times_only_once_every_client_has_been_answered():
    app, seen = load_app(predict_s=0.3)  # longer than a fixed pause before timing would wait
    with serve(app) as server:
        stats = health_under_load(server.url, n=3, clients=4, gap_s=0.0)
    assert stats.n == 3
    first_timed = seen["at_health"][1]  # [0] is the untimed probe that opens the connection
    assert first_timed >= 4
    assert not _hammers()


def test_health_under_load_reports_a_failing_predict_without_hanging():
    app, _ = load_app(predict_s=0.0, status=503)
    with serve(app) as server, pytest.raises(RuntimeError, match="/predict answered 503"):
        health_under_load(server.url, n=3, clients=2)
    assert not _hammers()


def test_bench_rows_judge_each_kind_of_work_against_its_goal():
    p99 = {
        ("sleep", "blocking"): 200.0,
        ("sleep", "def"): 10.0,
        ("sleep", "threadpool"): 100.0,
        ("torch", "blocking"): 200.0,
        ("torch", "def"): 66.0,
        ("torch", "threadpool"): 67.0,
        ("python", "blocking"): 200.0,
        ("python", "def"): 100.0,
        ("python", "threadpool"): 150.0,
    }
    rows = rows_for(p99)
    assert len(rows) == len(WORKS) * (len(STYLES) + 2)
    ratios = {row.metric: (round(row.value, 2), row.verdict) for row in rows if row.unit == "×"}
    assert ratios == {
        "/health p99 ratio, sleep work: blocking async def ÷ def endpoint": (20.0, MET),
        "/health p99 ratio, sleep work: blocking async def ÷ run_in_threadpool": (2.0, UNMET),
        "/health p99 ratio, torch work: blocking async def ÷ def endpoint": (3.03, MET),
        "/health p99 ratio, torch work: blocking async def ÷ run_in_threadpool": (2.99, UNMET),
        "/health p99 ratio, python work: blocking async def ÷ def endpoint": (2.0, REPORT_ONLY),
        "/health p99 ratio, python work: blocking async def ÷ run_in_threadpool": (1.33, REPORT_ONLY),
    }
    assert GOALS == {"sleep": Goal(">=", 3.0), "torch": Goal(">=", 3.0), "python": None}
    latency = [row.metric for row in rows if row.unit == "ms"]
    assert "releases the GIL" in latency[0] and "holds the GIL" in latency[-1]
