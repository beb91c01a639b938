"""Notebook 03's event-loop pitfall: the same slow /predict written three ways, next to an async /health.

- ``"blocking"`` — the source's mistake: ``async def predict`` calls the model directly, so the event loop
  (which also answers /health and every other request) waits for each inference;
- ``"def"`` — a plain ``def`` endpoint: FastAPI runs it in Starlette's thread pool;
- ``"threadpool"`` — ``async def`` that hands the model call to ``await run_in_threadpool(...)``.

The model is the real SimpleNN; ``work_s`` adds a fixed sleep to each call to stand for a heavier model
(ResNet-50 on a CPU takes tens of milliseconds), so the effect is large and does not depend on free cores.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Literal

import requests
from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from course_lib.apps.iris_fastapi import as_classifier, predict_rows
from course_lib.apps.iris_schemas import IrisFeatures, PredictionResponse
from course_lib.bench import LatencyStats

__all__ = ["STYLES", "create_pitfall_app", "health_under_load"]

STYLES = ("blocking", "def", "threadpool")


def create_pitfall_app(
    style: Literal["blocking", "def", "threadpool"], model: Any = None, work_s: float = 0.05
) -> FastAPI:
    """An app with async GET /health and POST /predict written in the given style; each predict takes ≥ work_s."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, got {style!r}")
    classifier = as_classifier(model)

    def slow_predict(features: list[float]) -> PredictionResponse:
        """The real model call plus work_s of blocking work (a stand-in for a bigger model)."""
        time.sleep(work_s)
        return predict_rows(classifier, [features])[0]

    app = FastAPI(title=f"async pitfall: {style}", docs_url=None, redoc_url=None)

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
    """Latency of n sequential GET /health while `clients` threads keep POSTing /predict to the server at url."""
    stop = threading.Event()
    errors: list[str] = []

    def hammer() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                response = session.post(url + "/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}, timeout=60)
                if response.status_code != 200:
                    errors.append(f"/predict answered {response.status_code}")
                    return

    threads = [threading.Thread(target=hammer, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    durations = []
    try:
        with requests.Session() as session:
            session.get(url + "/health", timeout=60)  # open the connection before timing
            time.sleep(0.2)  # let every client get its first request in
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
