"""Hardening of the iris FastAPI app: OpenAPI fuzzing, soak, size limits on every route, start/stop cycles."""

from __future__ import annotations

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
from soak import Call, assert_clean, soak

from course_lib.apps.iris_fastapi import MAX_BODY_BYTES, create_app
from course_lib.apps.iris_schemas import MAX_BATCH
from course_lib.data import iris_rows
from course_lib.models import train_simple_nn
from course_lib.servers import serve

JSON = {"Content-Type": "application/json"}
GOOD = {"features": [5.1, 3.5, 1.4, 0.2]}
CLIENTS, PER_CLIENT = 8, 1000

MIX = [
    Call("source request", "POST", "/predict", True, {"json": GOOD}),
    Call("batch of 10", "POST", "/predict/batch", True, {"json": {"instances": iris_rows(10, seed=3).tolist()}}),
    Call("health", "GET", "/health", True),
    Call("NaN literal", "POST", "/predict", False, {"data": '{"features": [NaN, 3.5, 1.4, 0.2]}', "headers": JSON}),
    Call("longer than a metre", "POST", "/predict", False, {"json": {"features": [5.1, 3.5, 1.4, 1e308]}}),
    Call("extra field", "POST", "/predict", False, {"json": {**GOOD, "unit": "mm"}}),
    Call("five features", "POST", "/predict", False, {"json": {"features": [1, 2, 3, 4, 5]}}),
    Call("malformed JSON", "POST", "/predict", False, {"data": '{"features": [5.1,', "headers": JSON}),
    Call("batch too large", "POST", "/predict/batch", False, {"json": {"instances": [[1, 1, 1, 1]] * (MAX_BATCH + 1)}}),
    Call("over the size limit", "POST", "/predict", False, {"data": b" " * (MAX_BODY_BYTES + 1), "headers": JSON}),
    Call("wrong method", "GET", "/predict", False),
    Call("unknown path", "GET", "/admin", False),
]


@pytest.fixture(scope="module")
def net():
    return train_simple_nn()[0]


@pytest.fixture(scope="module")
def server(net):
    with serve(create_app(net)) as srv:
        yield srv


def test_fuzzing_from_the_openapi_document_finds_no_5xx_and_no_schema_mismatch(server, record_property):
    counts = fuzz_openapi(server.url)
    record_property("measured", f"fuzz iris_fastapi: {counts}")
    assert {"POST /predict", "POST /predict/batch", "GET /health"} <= set(counts)
    assert counts["POST /predict"] >= 50 and counts["POST /predict/batch"] >= 50, counts
    assert requests.get(server.url + "/health", timeout=10).ok


def test_soak_8_clients_good_and_bad_requests_mixed(server, record_property):
    reference = reference_answers(server.url, MIX)
    assert set(reference["source request"]) == {"prediction", "class_name", "confidence"}
    assert reference["source request"]["class_name"] == "setosa" and len(reference["batch of 10"]["predictions"]) == 10
    report = soak(server.url, MIX, clients=CLIENTS, per_client=PER_CLIENT, seed=2,
                  check=same_answers_under_load(reference))
    record_property("measured", f"soak iris_fastapi: {report.summary()}")
    assert_clean(report, expected=CLIENTS * PER_CLIENT)
    assert requests.get(server.url + "/health", timeout=10).ok


def test_every_route_refuses_a_body_over_the_limit(net):
    statuses = oversized_answers(create_app(net), MAX_BODY_BYTES)
    assert statuses and set(statuses.values()) == {413}, statuses


def test_start_stop_cycles_with_requests_in_flight_leak_nothing(net, record_property):
    app = create_app(net)
    counts = start_stop_cycles(lambda: serve(app), lambda url: requests.post(url + "/predict", json=GOOD, timeout=10),
                               cycles=12)
    record_property("measured", f"lifecycle iris_fastapi (12 cycles): {counts}")
    assert_lifecycle_clean(counts, cycles=12)


def test_binds_loopback(server):
    assert bound_address(server) == "127.0.0.1"


def test_a_model_that_crashes_gives_500_json_without_details_and_keeps_serving(net, capfd):
    class Exploding:
        classes_ = [0, 1, 2]

        def predict_proba(self, X):
            raise RuntimeError("secret detail at /srv/models/iris.pt")

    with serve(create_app(Exploding())) as server:
        response = requests.post(server.url + "/predict", json=GOOD, timeout=10)
        assert response.status_code == 500 and response.headers["content-type"] == "application/json"
        assert "secret" not in response.text and not leaks(response.text)
        assert requests.get(server.url + "/health", timeout=10).ok
    assert "secret detail" in capfd.readouterr().err  # uvicorn's log keeps the traceback for the operator


def test_a_missing_model_file_is_reported_when_the_app_is_built(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        create_app(tmp_path / "missing.pt")
