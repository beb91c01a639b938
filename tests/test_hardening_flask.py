"""Hardening of the iris Flask API: soak, size limits on every route, start/stop cycles, no debugger, loopback."""

from __future__ import annotations

import pytest
import requests
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

from course_lib.apps.iris_flask import MAX_CONTENT_LENGTH, create_app
from course_lib.models import train_iris_forest
from course_lib.servers import serve

JSON = {"Content-Type": "application/json"}
GOOD = {"features": [5.1, 3.5, 1.4, 0.2]}
CLIENTS, PER_CLIENT = 8, 1000

MIX = [
    Call("source request", "POST", "/predict", True, {"json": GOOD}),
    Call("another flower", "POST", "/predict", True, {"json": {"features": [6.9, 3.1, 5.4, 2.1]}}),
    Call("health", "GET", "/health", True),
    Call("NaN literal", "POST", "/predict", False, {"data": '{"features": [NaN, 3.5, 1.4, 0.2]}', "headers": JSON}),
    Call("malformed JSON", "POST", "/predict", False, {"data": '{"features": [5.1,', "headers": JSON}),
    Call("three features", "POST", "/predict", False, {"json": {"features": [5.1, 3.5, 1.4]}}),
    Call("strings", "POST", "/predict", False, {"json": {"features": ["a", "b", "c", "d"]}}),
    Call("form body", "POST", "/predict", False, {"data": {"features": "5.1"}}),
    Call("over the size limit", "POST", "/predict", False,
         {"data": b"[" + b"1," * MAX_CONTENT_LENGTH + b"1]", "headers": JSON}),
    Call("wrong method", "GET", "/predict", False),
    Call("unknown path", "GET", "/admin", False),
]


@pytest.fixture(scope="module")
def model():
    return train_iris_forest()[0]


def test_soak_8_clients_good_and_bad_requests_mixed(model, record_property):
    with serve(create_app(model)) as server:
        reference = reference_answers(server.url, MIX)
        assert set(reference["source request"]) == {"prediction", "class_id", "probabilities"}
        assert [reference[name]["prediction"] for name in ("source request", "another flower")] == [
            "setosa", "virginica"]
        report = soak(server.url, MIX, clients=CLIENTS, per_client=PER_CLIENT, seed=1,
                      check=same_answers_under_load(reference))
        record_property("measured", f"soak iris_flask: {report.summary()}")
        assert_clean(report, expected=CLIENTS * PER_CLIENT)
        assert sum(n for code, n in report.statuses.items() if code == 200) > CLIENTS * PER_CLIENT // 5
        assert requests.get(server.url + "/health", timeout=10).ok


def test_every_route_refuses_a_body_over_the_limit(model):
    statuses = oversized_answers(create_app(model), MAX_CONTENT_LENGTH)
    assert statuses and set(statuses.values()) == {413}, statuses


def test_no_static_route_serves_package_files(model):
    with serve(create_app(model)) as server:
        response = requests.get(server.url + "/static/app.js", timeout=10)  # the image API's demo script
        assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_start_stop_cycles_with_requests_in_flight_leak_nothing(model, record_property):
    app = create_app(model)
    counts = start_stop_cycles(lambda: serve(app), lambda url: requests.post(url + "/predict", json=GOOD, timeout=10),
                               cycles=30)
    record_property("measured", f"lifecycle iris_flask (30 cycles): {counts}")
    assert_lifecycle_clean(counts, cycles=30)


def test_binds_loopback_and_never_runs_the_debugger(model):
    app = create_app(model)
    assert not app.debug and not app.testing
    with serve(app) as server:
        assert bound_address(server) == "127.0.0.1"
        console = requests.get(server.url + "/console", timeout=10)  # the Werkzeug debugger's console
        assert console.status_code == 404 and "Werkzeug" not in console.text


def test_a_model_that_crashes_gives_500_json_without_details_and_keeps_serving(model, caplog):
    class Exploding:
        classes_ = model.classes_

        def predict_proba(self, X):
            raise RuntimeError("secret detail at /srv/models/iris.pkl")

    with serve(create_app(Exploding())) as server:
        response = requests.post(server.url + "/predict", json=GOOD, timeout=10)
        assert response.status_code == 500 and response.json()["code"] == "internal_error"
        assert "secret" not in response.text and not leaks(response.text)
        assert requests.get(server.url + "/health", timeout=10).ok
    assert "secret detail" in caplog.text  # the server's log keeps the details for the operator


def test_an_unusable_model_is_refused_when_the_app_is_built():
    with pytest.raises(TypeError, match="fitted classifier"):
        create_app(object())
