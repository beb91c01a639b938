"""The image-classification API of notebooks 05 and 06: multipart upload, Base64 JSON, health, a demo page, and
optional dynamic batching.

`create_app` composes `routes` and `add_error_handlers`. Without batching (max_batch=1) each predict request is
answered by `classifier.classify(data, backend)` in the thread pool. With max_batch > 1 each request is decoded and
preprocessed on its own first (`classifier.prepare`, in the thread pool: a bad image fails alone, with its 4xx),
then queued on a `MicroBatcher` whose one worker thread answers up to max_batch of them with one network call
(`classifier.classify_prepared`). A full queue answers 503 with Retry-After; a client that disconnects while
queued leaves the queue. Another way of batching plugs in through `batching_class` (notebook 07's Ray Serve
`@serve.batch`: `course_lib.ray_serving.ServeBatching`), with the same routes and answers. `classifier_of`,
`backend_of` and `batcher_of` give what an app serves;
`app_from_environment` builds the app from COURSE_IMAGE_* variables (`uvicorn --factory`, one per worker process).
"""

from __future__ import annotations

import asyncio
import math
import os
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from fastapi import APIRouter, BackgroundTasks, FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect

from course_lib.apps.body_limit import BodySizeLimit
from course_lib.batching import BatcherStoppedError, MicroBatcher, QueueFullError
from course_lib.drift import DriftMonitor, image_statistics
from course_lib.monitoring import ApiMetrics, instrument_fastapi
from course_lib.vision import Backend, Classifier, ImageError, decode_base64, load_classifier
from course_lib.vision.auto_backend import AUTO, auto_backend
from course_lib.vision.backends import make_backend
from course_lib.vision.decoding import MAX_IMAGE_BYTES

T = TypeVar("T")

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = MAX_IMAGE_BYTES * 4 // 3 + 64 * 1024  # a Base64 image at the limit plus JSON/multipart framing
DEFAULT_MAX_WAIT_MS = 5.0
DEFAULT_MAX_QUEUE = 64
DRAIN_TIMEOUT_S = 30.0  # at shutdown, queued requests get this long to be answered; later ones get 503
# create_app's settings as environment variables, for app_from_environment (COURSE_IMAGE_MODEL picks the model)
ENVIRONMENT = {
    "backend": "COURSE_IMAGE_BACKEND",
    "max_batch": "COURSE_IMAGE_MAX_BATCH",
    "max_wait_ms": "COURSE_IMAGE_MAX_WAIT_MS",
    "max_queue": "COURSE_IMAGE_MAX_QUEUE",
}
FACTORY = "course_lib.apps.image_api:app_from_environment"  # the import string uvicorn's workers load


class Base64Image(BaseModel):
    """Body of POST /predict/base64: {"image": "<base64>"} with or without a data:image/...;base64, prefix."""

    image: str


class TopClass(BaseModel):
    """One of the top-k classes and its probability."""

    model_config = ConfigDict(populate_by_name=True)

    class_: str = Field(alias="class")
    probability: float = Field(ge=0, le=1)


class Prediction(BaseModel):
    """Answer of both predict routes."""

    top_class: str
    confidence: float = Field(ge=0, le=1)
    top_5: list[TopClass]
    inference_time_ms: float = Field(ge=0)
    model: str
    backend: str


class BatchingStatus(BaseModel):
    """Dynamic batching of a server: its settings and its batcher's counters since the server started."""

    max_batch: int = Field(description="most images one network call takes")
    max_wait_ms: float = Field(description="longest a request waits for others to fill its batch")
    max_queue: int = Field(description="most requests waiting; more are answered 503 with Retry-After")
    queued: int = Field(description="requests waiting now")
    batches: int = Field(description="network calls made")
    mean_batch_size: float = Field(description="mean number of images per network call")
    rejected: int = Field(description="requests refused because the queue was full")
    cancelled: int = Field(description="requests dropped from the queue because their client disconnected")


class Health(BaseModel):
    """Answer of GET /health."""

    status: str
    model: str
    description: str
    backend: str
    classes: int
    batching: BatchingStatus | None = Field(description="null when each request runs alone (max_batch 1)")
    backend_choice: dict[str, Any] | None = Field(
        default=None, description="how backend='auto' chose: each backend's median ms, the choice and why (else null)"
    )


class ErrorBody(BaseModel):
    """Every error answer: a message, plus the failing fields for a 422."""

    error: str
    detail: list[dict[str, Any]] | None = None


# Documented in the OpenAPI schema so that clients (and the schema fuzzing test) know every answer's shape.
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "not a readable image: empty, truncated or bad Base64"},
    413: {"model": ErrorBody, "description": "body, file or pixel count over the limit"},
    415: {"model": ErrorBody, "description": "not one of the allowed image formats"},
    422: {"model": ErrorBody, "description": "the request does not have the documented fields"},
}
# Only an app with dynamic batching answers 503.
BUSY: dict[int | str, dict[str, Any]] = {
    503: {
        "model": ErrorBody,
        "description": "the batch queue is full (retry after Retry-After seconds) or the server is shutting down",
        "headers": {
            "Retry-After": {
                "description": "whole seconds the queue needs to empty (a full queue only)",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    },
}


class BatchingPolicy(Protocol):
    """What the routes need from a way of batching: `Batching` here, `ServeBatching` on Ray Serve."""

    lifespan: Callable[[FastAPI], Any]

    async def classify(self, request: Request, data: bytes) -> dict[str, Any]:
        """The answer for one image, computed in a batch with other requests' images."""
        ...

    def status(self, request: Request) -> dict[str, Any]:
        """GET /health's `batching`: the fields of BatchingStatus."""
        ...

    def summary(self) -> str:
        """The settings in words, for the OpenAPI description."""
        ...


def create_app(
    classifier: Classifier | None = None,
    backend: str | Backend = AUTO,
    max_batch: int = 1,
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
    max_queue: int = DEFAULT_MAX_QUEUE,
    batching_class: Callable[[Classifier, Backend, int, float, int], BatchingPolicy] | None = None,
    model_version: str = "unversioned",
    drift_monitor: DriftMonitor | None = None,
) -> FastAPI:
    """Build the API around a classifier (default: load_classifier()) and a backend (BACKENDS name, "auto", Backend).

    backend="auto", the default, times the backends this machine can run at start-up (a few seconds, and the first
    time an ONNX export and an int8 quantization) and serves the fastest (`auto_backend`); GET /health's
    `backend_choice` says what it measured and why it chose. The notebooks name their backend.

    max_batch > 1 turns dynamic batching on: up to max_batch concurrent requests share one network call, the first
    of them waiting at most max_wait_ms for the others; at most max_queue wait, more are answered 503. The batching
    is `batching_class(classifier, backend, max_batch, max_wait_ms, max_queue)`, by default this module's `Batching`.
    GET /metrics and the request log (course_lib.monitoring) name the model, its backend and model_version.
    drift_monitor (e.g. `drift.image_drift_monitor(training_images)`) receives the statistics of every image answered,
    computed after the answer has been sent; /metrics then shows its scores (`monitoring.DriftCollector`).
    """
    classifier = classifier or load_classifier()
    if backend == AUTO:
        engine = auto_backend(classifier)
    else:
        engine = make_backend(classifier, backend) if isinstance(backend, str) else backend
    make_batching = batching_class or Batching
    batching = None if max_batch == 1 else make_batching(classifier, engine, max_batch, max_wait_ms, max_queue)
    engine.probabilities(classifier.example_input(1))  # warm-up: the first call pays one-off set-up costs
    app = FastAPIOffline(  # /docs and /redoc with bundled assets: no CDN needed
        title="Image classification API",
        description=f"{classifier.description}; backend: {engine.name}" + (batching.summary() if batching else ""),
        version="1.0",
        lifespan=batching.lifespan if batching else None,
    )
    app.add_middleware(
        BodySizeLimit, max_bytes=MAX_BODY_BYTES, key="error", message="the request body is larger than {limit} bytes"
    )
    add_error_handlers(app)
    app.include_router(routes(classifier, engine, batching, drift_monitor))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    metrics = ApiMetrics(classifier.name, model_version, backend=engine.name)
    if drift_monitor is not None:
        metrics.watch_drift(drift_monitor)
    instrument_fastapi(app, metrics)
    # read them through classifier_of / backend_of / batcher_of
    app.state.classifier, app.state.backend, app.state.batching = classifier, engine, batching
    return app


def app_from_environment() -> FastAPI:
    """`create_app` with the settings of the COURSE_IMAGE_* variables: what each uvicorn worker process runs."""
    return create_app(load_classifier(download=False), **settings_from_environment())


def settings_from_environment(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """create_app's keyword arguments from the variables of ENVIRONMENT that are set (default: os.environ)."""
    environ = os.environ if environ is None else environ
    kinds = {"backend": str, "max_batch": int, "max_wait_ms": float, "max_queue": int}
    settings: dict[str, Any] = {}
    for key, variable in ENVIRONMENT.items():
        text = environ.get(variable, "").strip()
        if text:
            try:
                settings[key] = kinds[key](text)
            except ValueError:
                kind = "an integer" if kinds[key] is int else "a number"
                raise ValueError(f"{variable}={text!r} is not {kind}") from None
    return settings


def environment_for(**settings: Any) -> dict[str, str]:
    """The variables that make `app_from_environment` build create_app(**settings) (settings as create_app's)."""
    return {ENVIRONMENT[key]: str(value) for key, value in settings.items()}


def classifier_of(app: FastAPI) -> Classifier:
    """The classifier an app made by `create_app` serves."""
    return app.state.classifier


def backend_of(app: FastAPI) -> Backend:
    """The backend an app made by `create_app` runs its classifier with (the one its answers name)."""
    return app.state.backend


def batcher_of(app: FastAPI) -> MicroBatcher[torch.Tensor, dict[str, Any]] | None:
    """The batcher of the app's latest server run (not started before the first); None without batching.

    Read its stats() on the server's event loop, or ask GET /health, whose `batching` holds the same counters.
    """
    batching = app.state.batching
    return batching.batcher if isinstance(batching, Batching) else None


class Batching:
    """Dynamic batching of one app: each server run's lifespan makes, starts and finally stops its own MicroBatcher.

    The batcher travels in the lifespan state (`request.state.batcher`), so two servers of one app never share one.
    """

    def __init__(self, classifier: Classifier, backend: Backend, max_batch: int, max_wait_ms: float, max_queue: int):
        self.classifier, self.backend = classifier, backend
        self.settings = {"max_batch": max_batch, "max_wait_ms": max_wait_ms, "max_queue": max_queue}
        self.batcher = self._new_batcher()  # the latest server run's; made now, so that bad settings fail at once

    def _new_batcher(self) -> MicroBatcher[torch.Tensor, dict[str, Any]]:
        return MicroBatcher(self._run_batch, **self.settings)

    def _run_batch(self, prepared: list[torch.Tensor]) -> list[dict[str, Any]]:
        """One network call for the whole batch (in the batcher's worker thread)."""
        return self.classifier.classify_prepared(prepared, self.backend)

    @asynccontextmanager
    async def lifespan(self, app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        """Start a batcher when the server starts; when it stops, answer what is queued, then stop the batcher."""
        batcher = self.batcher = self._new_batcher()  # a stopped batcher cannot restart: each run gets its own
        await batcher.start()
        try:
            yield {"batcher": batcher}
        finally:
            await batcher.stop(timeout_s=DRAIN_TIMEOUT_S)

    async def classify(self, request: Request, data: bytes) -> dict[str, Any]:
        """Decode and preprocess alone (a bad image raises its ImageError here), then wait for a batch's answer."""
        prepared = await run_in_threadpool(self.classifier.prepare, data)
        return await unless_disconnected(request, _batcher(request).submit(prepared))

    def status(self, request: Request) -> dict[str, Any]:
        """The settings and the counters of this server's batcher, as GET /health reports them (on the event loop)."""
        batcher = _batcher(request)
        stats = batcher.stats()
        return {
            **self.settings,
            "queued": batcher.queued,
            "batches": stats.batches,
            "mean_batch_size": round(stats.mean_size, 3),
            "rejected": stats.rejected,
            "cancelled": stats.cancelled,
        }

    def summary(self) -> str:
        """The settings in words, for the OpenAPI description."""
        max_batch, max_wait_ms, max_queue = self.settings.values()
        return f"; dynamic batching: up to {max_batch} images per call, {max_wait_ms} ms wait, {max_queue} queued"


async def unless_disconnected(request: Request, answer: Coroutine[Any, Any, T]) -> T:
    """Await answer, unless the client disconnects first: then cancel it and raise ClientDisconnect.

    A cancelled MicroBatcher.submit takes its item out of the queue, so a gone client's image is never run.
    Waiting for the disconnect message is what `request.is_disconnected()` polls for, without the polling.
    """
    pending = asyncio.ensure_future(answer)
    gone = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({pending, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gone.cancel()
        pending.cancel()  # does nothing once it is done
    if pending not in done:
        raise ClientDisconnect()
    return pending.result()


def _batcher(request: Request) -> MicroBatcher[torch.Tensor, dict[str, Any]]:
    """The batcher of the server run this request came to (its lifespan state)."""
    try:
        return request.state.batcher
    except AttributeError:
        raise RuntimeError("the batcher starts in the app's lifespan; serve the app with lifespan on") from None


async def _disconnected(request: Request) -> None:
    """Return when the client has gone (its body is read, so the next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def routes(
    classifier: Classifier,
    backend: Backend,
    batching: BatchingPolicy | None = None,
    drift_monitor: DriftMonitor | None = None,
) -> APIRouter:
    """The demo page, /health and the two predict routes for one classifier and backend, batched or not."""
    router = APIRouter()
    responses = {**ERRORS, **BUSY} if batching else ERRORS

    def watch(data: bytes) -> None:
        """Add an answered image's statistics to the drift window (a background task: after the answer is sent)."""
        drift_monitor.add(image_statistics(data))

    async def answer(request: Request, data: bytes, tasks: BackgroundTasks) -> dict[str, Any]:
        """classify alone in the thread pool, or through the batcher; then, off the answer's path, watch for drift."""
        if batching is None:
            result = await run_in_threadpool(classifier.classify, data, backend)
        else:
            result = await batching.classify(request, data)
        if drift_monitor is not None:
            tasks.add_task(watch, data)
        return result

    @router.get("/", include_in_schema=False)
    def demo_page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @router.get("/health", response_model=Health)
    async def health(request: Request) -> dict[str, Any]:
        """Liveness, which model/backend this server runs, and its batching (on the event loop, as the batcher)."""
        return {
            "status": "ok",
            "model": classifier.name,
            "description": classifier.description,
            "backend": backend.name,
            "classes": len(classifier.categories),
            "batching": batching.status(request) if batching else None,
            "backend_choice": choice.as_dict() if (choice := getattr(backend, "choice", None)) else None,
        }

    @router.post("/predict", response_model=Prediction, responses=responses)
    async def predict(request: Request, tasks: BackgroundTasks, file: UploadFile = File(...)) -> dict[str, Any]:
        """Classify an uploaded image (multipart field `file`)."""
        return await answer(request, await file.read(MAX_IMAGE_BYTES + 1), tasks)

    @router.post("/predict/base64", response_model=Prediction, responses=responses)
    async def predict_base64(request: Request, body: Base64Image, tasks: BackgroundTasks) -> dict[str, Any]:
        """Classify a Base64 image sent as JSON {"image": "..."}."""
        return await answer(request, await run_in_threadpool(decode_base64, body.image), tasks)

    return router


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error as JSON {"error": ...}: image faults (4xx), HTTP errors, 422, a busy batcher (503), 500."""
    app.add_exception_handler(ImageError, image_error)
    app.add_exception_handler(QueueFullError, queue_full)
    app.add_exception_handler(BatcherStoppedError, shutting_down)
    app.add_exception_handler(ClientDisconnect, client_gone)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def image_error(request: Request, exc: ImageError) -> JSONResponse:
    """An unreadable, oversized or disallowed image → its status (400, 413 or 415) and message."""
    return JSONResponse({"error": exc.message}, status_code=exc.status)


def queue_full(request: Request, exc: QueueFullError) -> JSONResponse:
    """A full batch queue → 503 with Retry-After: the whole seconds the queue needs to empty, at least 1."""
    seconds = max(1, math.ceil(exc.retry_after_s))
    message = f"the server is busy: its batch queue is full; retry after {seconds} s"
    return JSONResponse({"error": message}, status_code=503, headers={"Retry-After": str(seconds)})


def shutting_down(request: Request, exc: BatcherStoppedError) -> JSONResponse:
    """A request that reaches a stopping or stopped batcher → 503."""
    return JSONResponse({"error": "the server is shutting down; it takes no new predictions"}, status_code=503)


def client_gone(request: Request, exc: ClientDisconnect) -> Response:
    """A client that disconnected before its answer: nobody reads this one (499 is what nginx logs for it)."""
    return Response(status_code=499)


def http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """404, 405 and other HTTP errors as {"error": detail}, keeping their headers (Allow for a 405)."""
    return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


def internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A server fault → 500 JSON without details (uvicorn still logs the traceback for the operator)."""
    return JSONResponse({"error": "internal server error; the failure was logged on the server"}, status_code=500)


def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """A request without the documented fields → 422 with where and why."""
    # The input is not echoed back: a NaN or huge value in it would break the JSON answer.
    detail = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
    return JSONResponse({"error": "invalid request", "detail": detail}, status_code=422)
