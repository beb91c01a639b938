"""The iris inference API of notebook 02 (Flask): /health, /predict, and a JSON error for every fault.

Request and response formats are the source's::

    POST /predict  {"features": [5.1, 3.5, 1.4, 0.2]}
    → 200 {"prediction": "setosa", "class_id": 0, "probabilities": {"setosa": 1.0, ...}}

Every error is JSON ``{"error": "<message>", "code": "<machine-readable code>"}``: 4xx for the client's
faults (400 bad input, 404, 405, 413 body too large, 415 not JSON), 500 without a traceback for anything
unexpected. Unexpected failures are logged to the ``course_lib.apps.iris_flask`` logger (silent until the
operator configures logging, e.g. ``logging.basicConfig()``).

``create_app`` composes the parts as Flask's tutorial does: ``create_blueprint`` (the routes around a model),
``register_error_handlers`` (the JSON errors) and ``refuse_large_bodies`` (413 before any route runs).
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from flask import Blueprint, Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from course_lib.data import IRIS_CLASSES
from course_lib.models import predict_iris, train_iris_forest
from course_lib.monitoring import ApiMetrics, instrument_flask

__all__ = [
    "VERSION",
    "MAX_CONTENT_LENGTH",
    "N_FEATURES",
    "InputError",
    "read_json_body",
    "parse_features",
    "predict_one",
    "create_blueprint",
    "refuse_large_bodies",
    "register_error_handlers",
    "create_app",
]

VERSION = "1.0.0"
N_FEATURES = 4
MAX_CONTENT_LENGTH = 16 * 1024  # bytes; a valid request is about 40 bytes
FLOAT32_MAX = float(np.finfo(np.float32).max)  # larger values become infinity inside the model
EXAMPLE = '{"features": [5.1, 3.5, 1.4, 0.2]}'

log = logging.getLogger(__name__)
log.addHandler(logging.NullHandler())


class InputError(ValueError):
    """A client fault: becomes a 4xx JSON answer with a message and a machine-readable code."""

    def __init__(self, message: str, code: str = "invalid_request", status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


def _reject_constant(name: str) -> float:
    """json.loads hook: NaN, Infinity and -Infinity are not JSON (RFC 8259), so refuse them."""
    raise InputError(f"{name} is not valid JSON; send finite numbers only", "invalid_json")


def read_json_body() -> Any:
    """The request body as JSON; InputError for an empty, non-JSON or malformed body, 413 if too large."""
    # Werkzeug raises 413 here when Content-Length exceeds the limit; a chunked body (no Content-Length)
    # is cut at the limit instead, so a body that fills it is treated as too large too.
    data = request.get_data(cache=True)
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(data) >= limit:
        raise RequestEntityTooLarge()
    if not data.strip():
        raise InputError(f"the request body is empty; send JSON such as {EXAMPLE}", "empty_body")
    if not request.is_json:
        kind = request.mimetype or "none"
        raise InputError(
            f"Content-Type must be application/json (got {kind}); send JSON such as {EXAMPLE}",
            "unsupported_media_type",
            415,
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("the request body is not UTF-8 encoded JSON", "invalid_json") from None
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except InputError:
        raise
    except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting such as [[[[...]]]]
        raise InputError(f"the request body is not valid JSON; send JSON such as {EXAMPLE}", "invalid_json") from None


def parse_features(payload: Any, n_features: int = N_FEATURES) -> list[float]:
    """Validate {"features": [n finite numbers]} and return the numbers as floats (InputError otherwise)."""
    if not isinstance(payload, dict):
        raise InputError(f"the JSON body must be an object such as {EXAMPLE}", "invalid_body")
    if "features" not in payload:
        raise InputError(f"'features' is missing; send JSON such as {EXAMPLE}", "missing_features")
    features = payload["features"]
    if not isinstance(features, list):
        raise InputError(
            f"'features' must be a list of {n_features} numbers, not {type(features).__name__}", "invalid_features"
        )
    if len(features) != n_features:
        raise InputError(f"'features' must have exactly {n_features} numbers, got {len(features)}", "invalid_features")
    values = []
    for i, value in enumerate(features):
        # bool is a subclass of int in Python, but true/false are not measurements
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"features[{i}] must be a number, got {_json_type(value)}", "invalid_features")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number) or abs(number) > FLOAT32_MAX:  # scikit-learn's trees compute in float32
            raise InputError(f"features[{i}] must be a finite number (|x| ≤ {FLOAT32_MAX:.3g})", "invalid_features")
        values.append(number)
    return values


def _json_type(value: Any) -> str:
    """The JSON name of a Python value's type, for error messages."""
    names = {str: "a string", bool: "a boolean", type(None): "null", list: "an array", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def predict_one(model: Any, features: Sequence[float], class_names: Sequence[str] = IRIS_CLASSES) -> dict[str, Any]:
    """Run the model on one row and format the source's answer: prediction, class_id, probabilities."""
    predictions = predict_iris(model, [features])
    class_id = int(predictions.class_ids[0])
    return {
        "prediction": class_names[class_id],
        "class_id": class_id,
        "probabilities": {
            class_names[c]: float(p) for c, p in zip(predictions.classes, predictions.probabilities[0], strict=True)
        },
    }


def _sorted_methods(allow: str | None) -> str:
    """The methods of an Allow header in a stable order (Werkzeug builds it from a set)."""
    return ", ".join(sorted(m.strip() for m in (allow or "").split(",") if m.strip()))


def _error(message: str, code: str, status: int) -> tuple[Response, int]:
    """A JSON error answer."""
    return jsonify(error=message, code=code), status


def _check_model(model: Any) -> None:
    """TypeError unless model is a fitted classifier (predict_proba and classes_)."""
    if not (hasattr(model, "predict_proba") and hasattr(model, "classes_")):
        raise TypeError(
            f"the model must be a fitted classifier with predict_proba and classes_ (got {type(model).__name__})"
        )


def create_blueprint(
    model: Any,
    class_names: Sequence[str] = IRIS_CLASSES,
    validate: Callable[[Any], list[float]] = parse_features,
) -> Blueprint:
    """The API's routes, GET /health and POST /predict, around a fitted classifier (predict_proba, classes_)."""
    _check_model(model)
    blueprint = Blueprint("iris", __name__)

    @blueprint.get("/health")
    def health() -> Response:
        """Liveness and the API version."""
        return jsonify(status="healthy", version=VERSION)

    @blueprint.post("/predict")
    def predict() -> Response:
        """Classify one iris flower: {"features": [sepal length, sepal width, petal length, petal width]}."""
        features = validate(read_json_body())
        return jsonify(predict_one(model, features, class_names))

    return blueprint


def refuse_large_bodies() -> None:
    """Before each request: 413 for a declared body over the app's limit, even on an endpoint that never reads it."""
    limit = request.max_content_length
    if limit is not None and request.content_length is not None and request.content_length > limit:
        raise RequestEntityTooLarge()


def _input_error(exc: InputError) -> tuple[Response, int]:
    """A client fault found by our own checks → 4xx JSON."""
    return _error(exc.message, exc.code, exc.status)


def _http_error(exc: HTTPException) -> Response:
    """Werkzeug's HTTP errors (404, 405, 413, ...) → the same status as JSON, keeping the Allow header of a 405."""
    allow = exc.get_response().headers.get("Allow")
    path = request.path if len(request.path) <= 100 else request.path[:100] + "…"
    message = {
        404: f"no such endpoint: {request.method} {path}; try GET /health or POST /predict",
        405: f"{request.method} is not allowed on {path}; allowed: {_sorted_methods(allow)}",
        413: f"the request body is too large (limit: {request.max_content_length} bytes)",
    }.get(exc.code or 0, exc.description or exc.name)
    code = {413: "body_too_large"}.get(exc.code or 0, (exc.name or "error").lower().replace(" ", "_"))
    response = jsonify(error=message, code=code)
    response.status_code = exc.code or 500
    if allow:
        response.headers["Allow"] = allow
    return response


def _unexpected_error(exc: Exception) -> tuple[Response, int]:
    """Anything else → log it with its traceback, answer 500 JSON without details."""
    log.error("unexpected error on %s %s", request.method, request.path, exc_info=exc)
    return _error("internal server error; the failure was logged on the server", "internal_error", 500)


def register_error_handlers(app: Flask) -> None:
    """Answer every fault as JSON: InputError → its 4xx, Werkzeug's HTTP errors → their status, the rest → 500."""
    app.register_error_handler(InputError, _input_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected_error)


def create_app(
    model: Any = None,
    *,
    max_content_length: int = MAX_CONTENT_LENGTH,
    class_names: Sequence[str] = IRIS_CLASSES,
    validate: Callable[[Any], list[float]] = parse_features,
    model_version: str = "unversioned",
) -> Flask:
    """Build the iris API around a fitted classifier (predict_proba, classes_); None: train the source's forest.

    validate turns the JSON body into the feature list or raises InputError (default: parse_features).
    GET /metrics and the request log (course_lib.monitoring) name the model by its class and model_version.
    """
    if model is None:
        model, _ = train_iris_forest()
    app = Flask(__name__, static_folder=None)  # an API: no /static route (the package's static/ is another app's)
    app.config["MAX_CONTENT_LENGTH"] = max_content_length
    app.config["IRIS_MODEL"] = model
    app.json.sort_keys = False  # keep the source's key order: prediction, class_id, probabilities
    app.before_request(refuse_large_bodies)
    register_error_handlers(app)
    app.register_blueprint(create_blueprint(model, class_names, validate))
    instrument_flask(app, ApiMetrics(type(model).__name__, model_version))
    return app
