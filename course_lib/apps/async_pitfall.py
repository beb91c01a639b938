"""Notebook 03's event-loop pitfall: the same slow /predict written three ways, next to an async /health.

- ``"blocking"`` — the source's mistake: ``async def predict`` calls the model directly, so the event loop
  (which also answers /health and every other request) waits for each inference;
- ``"def"`` — a plain ``def`` endpoint: FastAPI runs it in Starlette's thread pool;
- ``"threadpool"`` — ``async def`` that hands the model call to ``await run_in_threadpool(...)``.

The model is the real SimpleNN; ``work_s`` adds a fixed sleep to each call to stand for a heavier model
(ResNet-50 on a CPU takes tens of milliseconds), so the effect is large and does not depend on free cores.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from fastapi import FastAPI
from starlette.concurrency import run_in_threadpool

from course_lib.apps.iris_fastapi import as_classifier, predict_rows
from course_lib.apps.iris_schemas import IrisFeatures, PredictionResponse

__all__ = ["STYLES", "create_pitfall_app"]

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
