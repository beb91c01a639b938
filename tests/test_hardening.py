"""Hardening of the three APIs over real HTTP, one suite parametrized over the apps (as FastAPI's own
tests/test_tutorial runs one test over variants): OpenAPI fuzzing, soak, size limits on every route, start/stop
cycles with requests in flight, loopback bind, no debugger, a crashing model → 500 JSON without details."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import pytest
import requests
from fuzz import fuzz_openapi
from hardening import (
    assert_lifecycle_clean,
    bound_address,
    leaks,
    oversized_answers,
    reference_answers,
    same_answers_under_load,
    start_stop_cycles,
)
from schemathesis.checks import positive_data_acceptance
from soak import Call, assert_clean, soak
from test_image_api import NOISE_PNG, png_header_claiming

from course_lib.apps import image_api, iris_fastapi, iris_flask
from course_lib.apps.iris_schemas import MAX_BATCH
from course_lib.data import iris_rows
from course_lib.servers import serve
from course_lib.vision import encode_base64, sample_images
from course_lib.vision.backends import TorchBackend

JSON = {"Content-Type": "application/json"}
GOOD = {"features": [5.1, 3.5, 1.4, 0.2]}
CLIENTS, PER_CLIENT = 8, 1000
SAMPLES = sample_images()
SECRET = "secret detail at /srv/models/model.bin"


def upload(data: bytes, name: str = "x.png", mime: str = "image/png") -> dict:
    """requests keyword arguments of a multipart upload in the field `file`."""
    return {"files": {"file": (name, data, mime)}}


class Exploding:
    """A scikit-learn-like model whose every prediction fails with a message the client must never see."""

    classes_ = [0, 1, 2]

    def predict_proba(self, X):
        raise RuntimeError(SECRET)


@contextmanager
def exploding_model_app(create_app: Callable[[Any], Any], _model: Any) -> Iterator[Any]:
    """The iris app built on a model that raises on every prediction."""
    yield create_app(Exploding())


class ExplodingBackend(TorchBackend):
    """The real torch backend, armed after the app's warm-up call: then every call fails with a secret message."""

    armed = False

    def probabilities(self, batch):
        if self.armed:
            raise RuntimeError(SECRET)
        return super().probabilities(batch)


@contextmanager
def exploding_backend_app(classifier: Any, **settings: Any) -> Iterator[Any]:
    """The image app (with create_app's settings) whose backend raises on every request."""
    backend = ExplodingBackend(classifier)
    app = image_api.create_app(classifier, backend=backend, **settings)
    backend.armed = True
    yield app


@dataclass(frozen=True)
class AppCase:
    """One API under test: how to build it, what to send it, and what its good answers look like."""

    name: str
    model_fixture: str
    build: Callable[[Any], Any]
    body_limit: int
    mix: list[Call]
    seed: int
    good: Callable[[str], requests.Response]
    check_reference: Callable[[dict[str, Any]], bool]
    crashing: Callable[[Any], Any]
    cycles: int
    volatile: tuple[str, ...] = ()
    fuzz: bool = True
    fuzz_excluded: tuple[Any, ...] = ()


FLASK = AppCase(
    name="iris_flask",
    model_fixture="forest",
    build=iris_flask.create_app,
    body_limit=iris_flask.MAX_CONTENT_LENGTH,
    mix=[
        Call("source request", "POST", "/predict", True, {"json": GOOD}),
        Call("another flower", "POST", "/predict", True, {"json": {"features": [6.9, 3.1, 5.4, 2.1]}}),
        Call("health", "GET", "/health", True),
        Call("NaN literal", "POST", "/predict", False, {"data": '{"features": [NaN, 3.5, 1.4, 0.2]}', "headers": JSON}),
        Call("malformed JSON", "POST", "/predict", False, {"data": '{"features": [5.1,', "headers": JSON}),
        Call("three features", "POST", "/predict", False, {"json": {"features": [5.1, 3.5, 1.4]}}),
        Call("strings", "POST", "/predict", False, {"json": {"features": ["a", "b", "c", "d"]}}),
        Call("form body", "POST", "/predict", False, {"data": {"features": "5.1"}}),
        Call(
            "over the size limit",
            "POST",
            "/predict",
            False,
            {"data": b"[" + b"1," * iris_flask.MAX_CONTENT_LENGTH + b"1]", "headers": JSON},
        ),
        Call("wrong method", "GET", "/predict", False),
        Call("unknown path", "GET", "/admin", False),
    ],
    seed=1,
    good=lambda url: requests.post(url + "/predict", json=GOOD, timeout=10),
    check_reference=lambda ref: (
        set(ref["source request"]) == {"prediction", "class_id", "probabilities"}
        and [ref[name]["prediction"] for name in ("source request", "another flower")] == ["setosa", "virginica"]
    ),
    crashing=lambda model: exploding_model_app(iris_flask.create_app, model),
    cycles=30,
    fuzz=False,  # no OpenAPI document: test_iris_flask.py fuzzes it with Hypothesis JSON bodies
)

FASTAPI = AppCase(
    name="iris_fastapi",
    model_fixture="net",
    build=iris_fastapi.create_app,
    body_limit=iris_fastapi.MAX_BODY_BYTES,
    mix=[
        Call("source request", "POST", "/predict", True, {"json": GOOD}),
        Call("batch of 10", "POST", "/predict/batch", True, {"json": {"instances": iris_rows(10, seed=3).tolist()}}),
        Call("health", "GET", "/health", True),
        Call("NaN literal", "POST", "/predict", False, {"data": '{"features": [NaN, 3.5, 1.4, 0.2]}', "headers": JSON}),
        Call("longer than a metre", "POST", "/predict", False, {"json": {"features": [5.1, 3.5, 1.4, 1e308]}}),
        Call("extra field", "POST", "/predict", False, {"json": {**GOOD, "unit": "mm"}}),
        Call("five features", "POST", "/predict", False, {"json": {"features": [1, 2, 3, 4, 5]}}),
        Call("malformed JSON", "POST", "/predict", False, {"data": '{"features": [5.1,', "headers": JSON}),
        Call(
            "batch too large",
            "POST",
            "/predict/batch",
            False,
            {"json": {"instances": [[1, 1, 1, 1]] * (MAX_BATCH + 1)}},
        ),
        Call(
            "over the size limit",
            "POST",
            "/predict",
            False,
            {"data": b" " * (iris_fastapi.MAX_BODY_BYTES + 1), "headers": JSON},
        ),
        Call("wrong method", "GET", "/predict", False),
        Call("unknown path", "GET", "/admin", False),
    ],
    seed=2,
    good=lambda url: requests.post(url + "/predict", json=GOOD, timeout=10),
    check_reference=lambda ref: (
        set(ref["source request"]) == {"prediction", "class_name", "confidence"}
        and ref["source request"]["class_name"] == "setosa"
        and len(ref["batch of 10"]["predictions"]) == 10
    ),
    crashing=lambda model: exploding_model_app(iris_fastapi.create_app, model),
    cycles=12,
)

IMAGE = AppCase(
    name="image_api",
    model_fixture="classifier",
    build=lambda classifier: image_api.create_app(classifier, backend="torch"),
    body_limit=image_api.MAX_BODY_BYTES,
    mix=[
        Call("upload a digit", "POST", "/predict", True, upload(SAMPLES["digit_0.png"])),
        Call(
            "base64 data URL",
            "POST",
            "/predict/base64",
            True,
            {"json": {"image": "data:image/png;base64," + encode_base64(SAMPLES["digit_1.png"])}},
        ),
        Call("health", "GET", "/health", True),
        Call("empty file", "POST", "/predict", False, upload(b"")),
        Call("text file", "POST", "/predict", False, upload(b"just some text", "notes.txt", "text/plain")),
        Call("truncated png", "POST", "/predict", False, upload(NOISE_PNG[:300])),
        Call("decompression bomb", "POST", "/predict", False, upload(png_header_claiming(50_000, 50_000))),
        Call(
            "wrong field name",
            "POST",
            "/predict",
            False,
            {"files": {"image": ("x.png", SAMPLES["digit_0.png"], "image/png")}},
        ),
        Call("invalid base64", "POST", "/predict/base64", False, {"json": {"image": "iVBORw0KGgo$$$"}}),
        Call("base64 of text", "POST", "/predict/base64", False, {"json": {"image": encode_base64(b"hello world")}}),
        Call("NaN in the body", "POST", "/predict/base64", False, {"data": '{"image": NaN}', "headers": JSON}),
        Call("unknown path", "GET", "/admin", False),
    ],
    seed=3,
    good=lambda url: requests.post(url + "/predict", **upload(SAMPLES["digit_2.png"]), timeout=30),
    check_reference=lambda ref: (
        [ref[name]["top_class"] for name in ("upload a digit", "base64 data URL")] == ["0", "1"]
        and all(len(answer["top_5"]) == 5 for answer in ref.values())
    ),
    crashing=exploding_backend_app,
    cycles=10,
    volatile=("inference_time_ms",),
    # Any bytes are a schema-valid `file` (format: binary) but most are not images: rejecting them with a
    # documented 400/415 is right, so schemathesis' "valid data must be accepted" check does not apply here.
    fuzz_excluded=(positive_data_acceptance,),
)

# The same image API with dynamic batching, on the int8 backend: every check again, with requests sharing batches.
BATCHED = {"max_batch": 8, "max_wait_ms": 2}
IMAGE_BATCHED_INT8 = replace(
    IMAGE,
    name="image_api_batched_int8",
    build=lambda classifier: image_api.create_app(classifier, backend="onnx-int8", **BATCHED),
    seed=4,
    crashing=lambda classifier: exploding_backend_app(classifier, **BATCHED),
)


@pytest.fixture(scope="module", params=[FLASK, FASTAPI, IMAGE, IMAGE_BATCHED_INT8], ids=lambda case: case.name)
def case(request) -> AppCase:
    """Each API in turn (module scope: one running server per app for the whole suite)."""
    return request.param


@pytest.fixture(scope="module")
def model(case, request):
    """The trained model or classifier the app under test serves (conftest's session fixtures)."""
    return request.getfixturevalue(case.model_fixture)


@pytest.fixture(scope="module")
def app(case, model):
    """The app under test, built once (the int8 backend quantizes and checks parity when it is built)."""
    return case.build(model)


@pytest.fixture(scope="module")
def server(app):
    """The app under test, running on 127.0.0.1."""
    with serve(app) as srv:
        yield srv


def test_fuzzing_from_the_openapi_document_finds_no_5xx_and_no_schema_mismatch(case, server, record_property):
    if not case.fuzz:
        pytest.skip(f"{case.name} has no OpenAPI document")
    counts = fuzz_openapi(server.url, excluded_checks=list(case.fuzz_excluded))
    record_property("measured", f"fuzz {case.name}: {counts}")
    posts = [route for route in counts if route.startswith("POST ")]
    assert posts and all(counts[route] >= 50 for route in posts), counts
    assert "GET /health" in counts, counts
    assert requests.get(server.url + "/health", timeout=10).ok


def test_soak_8_clients_good_and_bad_requests_mixed(case, server, record_property):
    reference = reference_answers(server.url, case.mix)
    assert case.check_reference(reference), reference
    report = soak(
        server.url,
        case.mix,
        clients=CLIENTS,
        per_client=PER_CLIENT,
        seed=case.seed,
        check=same_answers_under_load(reference, volatile=list(case.volatile)),
    )
    record_property("measured", f"soak {case.name}: {report.summary()}")
    assert_clean(report, expected=CLIENTS * PER_CLIENT)
    assert report.statuses.get(200, 0) > CLIENTS * PER_CLIENT // 5, report.statuses
    assert requests.get(server.url + "/health", timeout=10).ok


def test_every_route_refuses_a_body_over_the_limit(case, app):
    statuses = oversized_answers(app, case.body_limit)  # a second server of the same app
    assert statuses and set(statuses.values()) == {413}, statuses


def test_start_stop_cycles_with_requests_in_flight_leak_nothing(case, app, record_property):
    counts = start_stop_cycles(lambda: serve(app), case.good, cycles=case.cycles)
    record_property("measured", f"lifecycle {case.name} ({case.cycles} cycles): {counts}")
    assert_lifecycle_clean(counts, cycles=case.cycles)


def test_binds_loopback_and_never_runs_a_debugger(app, server):
    assert bound_address(server) == "127.0.0.1"
    assert not getattr(app, "debug", False) and not getattr(app, "testing", False)
    console = requests.get(server.url + "/console", timeout=10)  # the Werkzeug debugger's console
    assert console.status_code == 404 and "Werkzeug" not in console.text


def test_a_model_that_crashes_gives_500_json_without_details_and_keeps_serving(case, model, capfd, caplog):
    with case.crashing(model) as app, serve(app) as server:
        response = requests.post(server.url + "/predict", **_good_request(case), timeout=30)
        assert response.status_code == 500 and response.headers["content-type"] == "application/json"
        assert SECRET.split()[0] not in response.text and not leaks(response.text)
        assert requests.get(server.url + "/health", timeout=10).ok
    assert SECRET in caplog.text + capfd.readouterr().err  # the server's log keeps the details for the operator


def _good_request(case: AppCase) -> dict[str, Any]:
    """The keyword arguments of the case's first good POST request."""
    return next(call.kwargs for call in case.mix if call.good and call.method == "POST")


# Hardening that belongs to one app only.


def test_flask_has_no_static_route_serving_package_files(forest):
    with serve(iris_flask.create_app(forest)) as server:
        response = requests.get(server.url + "/static/app.js", timeout=10)  # the image API's demo script
        assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_flask_refuses_an_unusable_model_when_the_app_is_built():
    with pytest.raises(TypeError, match="fitted classifier"):
        iris_flask.create_app(object())


def test_fastapi_reports_a_missing_model_file_when_the_app_is_built(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        iris_fastapi.create_app(tmp_path / "missing.pt")


def test_image_api_refuses_an_unknown_backend_when_the_app_is_built(classifier):
    with pytest.raises(ValueError, match="backend"):
        image_api.create_app(classifier, backend="tensorflow")
