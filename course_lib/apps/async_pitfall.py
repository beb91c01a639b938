"""Notebook 03's event-loop pitfall: the same slow /predict written three ways, next to an async /health.

- ``"blocking"`` — the source's mistake: ``async def predict`` calls the model directly, so the event loop
  (which also answers /health and every other request) waits for each inference;
- ``"def"`` — a plain ``def`` endpoint: FastAPI runs it in Starlette's thread pool;
- ``"threadpool"`` — ``async def`` that hands the model call to ``await run_in_threadpool(...)``.

The model is the real SimpleNN; each call adds ``work_s`` of extra work to stand for a heavier model (ResNet-50 on a
CPU takes tens of milliseconds). What that work is matters (``WORKS``):

- ``"sleep"`` (the default, used by notebook 03) waits without using a core and releases the GIL, so the effect is
  large and does not depend on free cores;
- ``"torch"`` runs matrix products on a core for ``work_s``, as real inference does; torch releases the GIL inside
  each product, so the event loop thread can still run;
- ``"python"`` runs a pure-Python loop for ``work_s``: it holds the GIL, and the event loop thread only gets it back
  at the interpreter's switch interval, so moving such work to a thread helps far less.

The CPU-bound kinds run until ``work_s`` of wall time has passed, like the sleep, so the three kinds are compared
for the same duration of work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import requests
import torch
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from course_lib.apps.iris_fastapi import as_classifier, predict_rows
from course_lib.apps.iris_schemas import IrisFeatures, PredictionResponse
from course_lib.bench import LatencyStats

__all__ = ["STYLES", "WORKS", "WORK_DESCRIPTIONS", "create_pitfall_app", "health_under_load", "do_work"]

STYLES = ("blocking", "def", "threadpool")
WORKS = ("sleep", "torch", "python")
WORK_DESCRIPTIONS = {
    "sleep": "time.sleep (no CPU, releases the GIL)",
    "torch": "torch matrix products (a busy core, GIL released inside each product)",
    "python": "a pure-Python loop (a busy core, holds the GIL)",
}
_MATRIX = 128  # side of the torch work's matrices: one product is well under a millisecond, so the deadline is kept


def _torch_work(seconds: float) -> None:
    """Multiply matrices until `seconds` of wall time have passed."""
    deadline = time.perf_counter() + seconds
    a = torch.ones(_MATRIX, _MATRIX)
    with torch.inference_mode():
        while time.perf_counter() < deadline:
            a = torch.mm(a, a).div_(_MATRIX)  # keeps the values finite


def _python_work(seconds: float) -> None:
    """Pure-Python arithmetic until `seconds` of wall time have passed; the GIL is held throughout."""
    deadline = time.perf_counter() + seconds
    total = 0
    while time.perf_counter() < deadline:
        for i in range(200):
            total += i * i


_WORK: dict[str, Callable[[float], None]] = {"sleep": time.sleep, "torch": _torch_work, "python": _python_work}


def do_work(work: Literal["sleep", "torch", "python"], seconds: float) -> None:
    """Spend `seconds` of wall time on the given kind of work (see WORKS)."""
    if work not in _WORK:
        raise ValueError(f"work must be one of {WORKS}, got {work!r}")
    _WORK[work](seconds)


def create_pitfall_app(
    style: Literal["blocking", "def", "threadpool"],
    model: Any = None,
    work_s: float = 0.05,
    work: Literal["sleep", "torch", "python"] = "sleep",
) -> FastAPI:
    """An app with async GET /health and POST /predict in the given style; each predict adds work_s of `work`."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    if work not in WORKS:
        raise ValueError(f"work must be one of {WORKS}, got {work!r}")
    classifier = as_classifier(model)

    def slow_predict(features: list[float]) -> PredictionResponse:
        """The real model call plus work_s of extra work (a stand-in for a bigger model)."""
        do_work(work, work_s)
        return predict_rows(classifier, [features])[0]

    app = FastAPI(title=f"async pitfall: {style}, {work}", docs_url=None, redoc_url=None)

    @app.get("/health")
    async def health() -> dict[str, str]:
        """Answered on the event loop: fast unless something blocks the loop."""
        return {"status": "healthy", "style": style}

    if style == "blocking":

        @app.post("/predict", response_model=PredictionResponse)
        async def predict(request: IrisFeatures) -> PredictionResponse:
            """WRONG: blocking work inside async def stalls the event loop."""
            return slow_predict(request.features)

    elif style == "def":

        @app.post("/predict", response_model=PredictionResponse)
        def predict(request: IrisFeatures) -> PredictionResponse:
            """Right: a def endpoint runs in the thread pool."""
            return slow_predict(request.features)

    else:

        @app.post("/predict", response_model=PredictionResponse)
        async def predict(request: IrisFeatures) -> PredictionResponse:
            """Right: async def that awaits the blocking call in the thread pool."""
            return await run_in_threadpool(slow_predict, request.features)

    return app


def health_under_load(url: str, n: int = 40, clients: int = 4, gap_s: float = 0.01) -> LatencyStats:
    """Latency of n sequential GET /health while `clients` threads keep POSTing /predict to the server at url.

    Timing starts once every client has had its first /predict answered, so the load is there from the first
    probe; gap_s paces the probes.
    """
    stop = threading.Event()
    loaded = [threading.Event() for _ in range(clients)]
    errors: list[str] = []

    def hammer(first_answer: threading.Event) -> None:
        try:
            with requests.Session() as session:
                while not stop.is_set():
                    response = session.post(url + "/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}, timeout=60)
                    if response.status_code != 200:
                        errors.append(f"/predict answered {response.status_code}")
                        return
                    first_answer.set()
        except requests.RequestException as error:
            errors.append(f"/predict failed: {error}")
        finally:
            first_answer.set()  # never leave the measuring thread waiting for a client that gave up

    threads = [threading.Thread(target=hammer, args=(event,), daemon=True) for event in loaded]
    for thread in threads:
        thread.start()
    durations = []
    try:
        with requests.Session() as session:
            session.get(url + "/health", timeout=60)  # open the connection before timing
            if not all(event.wait(60) for event in loaded):
                raise RuntimeError("the /predict clients got no answer within 60 s")
            if errors:
                raise RuntimeError(errors[0])
            started = time.perf_counter()
            for _ in range(n):
                t0 = time.perf_counter()
                session.get(url + "/health", timeout=60).raise_for_status()
                durations.append(time.perf_counter() - t0)
                time.sleep(gap_s)
            wall = time.perf_counter() - started
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    if errors:
        raise RuntimeError(errors[0])
    return LatencyStats.from_seconds(durations, wall)
