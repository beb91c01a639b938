"""The iris inference API of notebook 03 (FastAPI + PyTorch): /predict, /predict/batch, /health, offline docs.

    POST /predict        {"features": [5.1, 3.5, 1.4, 0.2]}
    → 200 {"prediction": 0, "class_name": "setosa", "confidence": 0.98}
    POST /predict/batch  {"instances": [[5.1, 3.5, 1.4, 0.2], ...]}  (1–100 rows) → {"predictions": [...]}
    GET  /health         {"status": "healthy", "version": "1.0.0", "model": "SimpleNN"}
    GET  /docs · /redoc · /openapi.json — Swagger UI and ReDoc served from the fastapi-offline wheel (no CDN;
                         a Content-Security-Policy keeps the pages from contacting any other host)

Bad input gets FastAPI's 422 ``{"detail": [...]}`` (NaN/Infinity included: the echoed input is made JSON-safe),
a body over the limit gets 413, unknown paths 404 and wrong methods 405 — all JSON. The endpoints are
plain ``def`` functions, so PyTorch runs in Starlette's thread pool and never blocks the event loop.

``create_app`` composes the parts: ``create_router`` (the routes around a model), ``add_exception_handlers`` (the
JSON errors), the body-size middleware and offline docs.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from course_lib.apps.body_limit import BodySizeLimit
from course_lib.apps.iris_schemas import (
    BatchResponse,
    HealthResponse,
    IrisBatch,
    IrisFeatures,
    PredictionResponse,
)
from course_lib.apps.offline_docs import LocalOnlyDocs
from course_lib.data import IRIS_CLASSES
from course_lib.models import IrisPredictions, load_simple_nn, predict_iris, train_simple_nn
from course_lib.monitoring import ApiMetrics, instrument_fastapi, request_id_from
from course_lib.releases import ModelVersion, ReleaseRouter

__all__ = [
    "VERSION",
    "MAX_BODY_BYTES",
    "TorchIrisClassifier",
    "as_classifier",
    "predict_rows",
    "format_predictions",
    "json_safe",
    "validation_exception_handler",
    "add_exception_handlers",
    "create_router",
    "create_app",
    "release_of",
]

VERSION = "1.0.0"
MAX_BODY_BYTES = 64 * 1024  # a full batch of 100 rows is about 3 KB


class TorchIrisClassifier:
    """A PyTorch iris network with scikit-learn's predict_proba/classes_ interface (used by both frameworks)."""

    def __init__(self, net: torch.nn.Module) -> None:
        self.net = net.eval()
        self.classes_ = np.arange(len(IRIS_CLASSES))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax probabilities for a (n, 4) array; inference_mode is entered here, in the calling thread."""
        with torch.inference_mode():
            logits = self.net(torch.as_tensor(np.asarray(X, dtype=np.float32)))
            return torch.softmax(logits, dim=1).double().numpy()


def as_classifier(model: Any = None) -> Any:
    """None → train SimpleNN; a path → load its state dict; an nn.Module → wrap it; else a predict_proba model."""
    if model is None:
        model, _ = train_simple_nn()
    if isinstance(model, (str, os.PathLike)):
        model = load_simple_nn(model)
    if isinstance(model, torch.nn.Module):
        return TorchIrisClassifier(model)
    if not hasattr(model, "predict_proba"):
        raise TypeError(
            f"the model must be an nn.Module, a state-dict path or have predict_proba (got {type(model).__name__})"
        )
    return model


def predict_rows(
    classifier: Any, rows: Sequence[Sequence[float]], class_names: Sequence[str] = IRIS_CLASSES
) -> list[PredictionResponse]:
    """Run the classifier on rows and return one PredictionResponse per row."""
    return format_predictions(predict_iris(classifier, rows), class_names)


def format_predictions(
    predictions: IrisPredictions, class_names: Sequence[str] = IRIS_CLASSES
) -> list[PredictionResponse]:
    """One PredictionResponse per row of predictions."""
    return [
        PredictionResponse(prediction=int(class_id), class_name=class_names[class_id], confidence=float(probs[best]))
        for class_id, probs, best in zip(
            predictions.class_ids, predictions.probabilities, predictions.best, strict=True
        )
    ]


def json_safe(value: Any) -> Any:
    """Replace NaN/±Infinity (anywhere in lists/dicts) by the strings "NaN"/"Infinity"/"-Infinity"."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


async def validation_exception_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 body, made JSON-safe: the default handler fails with a 500 when the input echoes NaN."""
    return JSONResponse(status_code=422, content={"detail": json_safe(jsonable_encoder(exc.errors()))})


def _internal_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """A server fault → 500 JSON without details (uvicorn still logs the traceback for the operator)."""
    return JSONResponse({"detail": "internal server error; the failure was logged on the server"}, status_code=500)


def add_exception_handlers(app: FastAPI) -> None:
    """The API's error answers: JSON-safe 422 for invalid input (NaN included), 500 JSON without details."""
    app.add_exception_handler(RequestValidationError, validation_exception_handler)
    app.add_exception_handler(Exception, _internal_error_handler)


def model_name_of(classifier: Any) -> str:
    """The class name of the network (or of the predict_proba model)."""
    return type(getattr(classifier, "net", classifier)).__name__


def create_router(
    model: Any = None,
    class_names: Sequence[str] = IRIS_CLASSES,
    *,
    release: ReleaseRouter | None = None,
) -> APIRouter:
    """The API's routes, /health, /predict and /predict/batch, around a model as as_classifier() takes it.

    The answering model is chosen per request by `release` (by default a ReleaseRouter with the model alone),
    keyed by the client's X-Client-ID (or the request id); the answer's X-Model-Version header names it.
    """
    if release is None:
        classifier = as_classifier(model)
        release = ReleaseRouter(ModelVersion(model_name_of(classifier), "unversioned", classifier))
    router = APIRouter()

    def answer(request: Request, response: Response, rows: Sequence[Sequence[float]]) -> list[PredictionResponse]:
        """Predict with the version the release router picks for this client, and say which one answered."""
        key = request.headers.get("x-client-id") or getattr(request.state, "request_id", None)
        version = release.choose(request_id_from(key))
        request.state.model_version = version.version  # for the request log and metrics, also if predicting fails
        response.headers["X-Model-Version"] = version.version
        return format_predictions(release.predict(rows, version), class_names)

    @router.get("/health", response_model=HealthResponse)
    def health() -> HealthResponse:
        """Liveness, API version and model name."""
        return HealthResponse(status="healthy", version=VERSION, model=release.stable.name)

    @router.post("/predict", response_model=PredictionResponse)
    def predict(body: IrisFeatures, request: Request, response: Response) -> PredictionResponse:
        """Classify one flower: sepal length, sepal width, petal length, petal width (cm)."""
        return answer(request, response, [body.features])[0]

    @router.post("/predict/batch", response_model=BatchResponse)
    def predict_batch(body: IrisBatch, request: Request, response: Response) -> BatchResponse:
        """Classify 1 to 100 (MAX_BATCH) flowers in one call; answers keep the order of the rows."""
        return BatchResponse(predictions=answer(request, response, body.instances))

    return router


def create_app(
    model: Any = None,
    *,
    max_body_bytes: int = MAX_BODY_BYTES,
    class_names: Sequence[str] = IRIS_CLASSES,
    model_version: str = "unversioned",
) -> FastAPI:
    """Build the iris API around SimpleNN (None: train it), a state-dict path or a predict_proba model.

    model_version names the model in /metrics, the request log and each answer's X-Model-Version header
    (notebook 08 passes the version of its manifest). `release_of(app)` shadows, canaries, promotes, rolls back.
    """
    app = FastAPIOffline(
        title="Iris inference API",
        version=VERSION,
        description="Classify an iris flower from 4 measurements (cm) with a small PyTorch network.",
    )
    classifier = as_classifier(model)
    release = ReleaseRouter(ModelVersion(model_name_of(classifier), model_version, classifier))
    metrics = ApiMetrics(release.stable.name, model_version)
    release.on_change = lambda stable: metrics.set_model(stable.name, stable.version)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.add_middleware(LocalOnlyDocs)
    add_exception_handlers(app)
    app.include_router(create_router(class_names=class_names, release=release))
    instrument_fastapi(app, metrics)
    app.state.release = release
    return app


def release_of(app: FastAPI) -> ReleaseRouter:
    """The ReleaseRouter of an app made by create_app (start_shadow, start_canary, promote, rollback)."""
    return app.state.release
