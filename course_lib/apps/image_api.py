"""The image-classification API of notebook 05: multipart upload, Base64 JSON, health, and a demo page.

`create_app` composes `routes` (each predict route answers `classifier.classify(data, backend)`) and
`add_error_handlers`; `classifier_of(app)` and `backend_of(app)` give what an app serves.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException

from course_lib.apps.body_limit import BodySizeLimit
from course_lib.vision import Backend, Classifier, ImageError, decode_base64, load_classifier
from course_lib.vision.backends import make_backend
from course_lib.vision.decoding import MAX_IMAGE_BYTES

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = MAX_IMAGE_BYTES * 4 // 3 + 64 * 1024  # a Base64 image at the limit plus JSON/multipart framing


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


class Health(BaseModel):
    """Answer of GET /health."""

    status: str
    model: str
    description: str
    backend: str
    classes: int


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


def create_app(classifier: Classifier | None = None, backend: str = "torch") -> FastAPI:
    """Build the API around a classifier (default: load_classifier()) served by the "torch" or "onnx" backend."""
    classifier = classifier or load_classifier()
    engine = make_backend(classifier, backend)
    engine.probabilities(classifier.example_input(1))  # warm-up: the first call pays one-off set-up costs
    app = FastAPIOffline(  # /docs and /redoc with bundled assets: no CDN needed
        title="Image classification API",
        description=f"{classifier.description}; backend: {engine.name}",
        version="1.0",
    )
    app.add_middleware(
        BodySizeLimit, max_bytes=MAX_BODY_BYTES, key="error", message="the request body is larger than {limit} bytes"
    )
    add_error_handlers(app)
    app.include_router(routes(classifier, engine))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.state.classifier, app.state.backend = classifier, engine  # read them through classifier_of / backend_of
    return app


def classifier_of(app: FastAPI) -> Classifier:
    """The classifier an app made by `create_app` serves."""
    return app.state.classifier


def backend_of(app: FastAPI) -> Backend:
    """The backend an app made by `create_app` runs its classifier with (the one its answers name)."""
    return app.state.backend


def routes(classifier: Classifier, backend: Backend) -> APIRouter:
    """The demo page, /health and the two predict routes for one classifier and backend."""
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    def demo_page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @router.get("/health", response_model=Health)
    def health() -> dict[str, Any]:
        """Liveness and which model/backend this server runs."""
        return {
            "status": "ok",
            "model": classifier.name,
            "description": classifier.description,
            "backend": backend.name,
            "classes": len(classifier.categories),
        }

    @router.post("/predict", response_model=Prediction, responses=ERRORS)
    def predict(file: UploadFile = File(...)) -> dict[str, Any]:
        """Classify an uploaded image (multipart field `file`)."""
        return classifier.classify(file.file.read(MAX_IMAGE_BYTES + 1), backend)

    @router.post("/predict/base64", response_model=Prediction, responses=ERRORS)
    def predict_base64(body: Base64Image) -> dict[str, Any]:
        """Classify a Base64 image sent as JSON {"image": "..."}."""
        return classifier.classify(decode_base64(body.image), backend)

    return router


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error as JSON {"error": ...}: image faults with their 4xx, HTTP errors, 422s, and a bare 500."""
    app.add_exception_handler(ImageError, image_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)
    app.add_exception_handler(RequestValidationError, validation_error)


def image_error(request: Request, exc: ImageError) -> JSONResponse:
    """An unreadable, oversized or disallowed image → its status (400, 413 or 415) and message."""
    return JSONResponse({"error": exc.message}, status_code=exc.status)


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
