"""The iris Flask API (course_lib.apps.iris_flask) over real HTTP: answers, every bad input, and recovery."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import requests
from sklearn.ensemble import RandomForestClassifier
from sklearn.svm import LinearSVC

from course_lib.apps.iris_flask import MAX_CONTENT_LENGTH, VERSION, create_app
from course_lib.data import IRIS_CLASSES, iris_rows, iris_split
from course_lib.servers import serve

GOOD = {"features": [5.1, 3.5, 1.4, 0.2]}
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(forest):
    """One running server shared by the tests of this module."""
    with serve(create_app(forest)) as srv:
        yield srv


def post(server, **kwargs) -> requests.Response:
    """POST /predict with a timeout."""
    return requests.post(server.url + "/predict", timeout=30, **kwargs)


def assert_still_serves(server) -> None:
    """The next good request after a failure is answered normally."""
    response = post(server, json=GOOD)
    assert response.status_code == 200
    assert response.json()["prediction"] == "setosa"


def test_health(server):
    response = requests.get(server.url + "/health", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "healthy", "version": VERSION}


def test_the_source_request_gives_setosa_with_the_source_shape(server):
    response = post(server, json=GOOD)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert list(body) == ["prediction", "class_id", "probabilities"]
    assert body["prediction"] == "setosa" and body["class_id"] == 0
    assert list(body["probabilities"]) == IRIS_CLASSES
    assert body["probabilities"]["setosa"] == max(body["probabilities"].values())
    assert sum(body["probabilities"].values()) == pytest.approx(1.0)


def test_answers_match_the_model_in_process(server, forest):
    rows = iris_rows(30, seed=3)
    expected = forest.predict_proba(rows.astype(np.float64))
    with requests.Session() as session:
        for row, probs in zip(rows, expected, strict=True):
            body = session.post(server.url + "/predict", json={"features": row.tolist()}, timeout=10).json()
            assert body["class_id"] == int(np.argmax(probs))
            assert body["prediction"] == IRIS_CLASSES[body["class_id"]]
            assert [body["probabilities"][name] for name in IRIS_CLASSES] == pytest.approx(probs.tolist())


def model_answer(model, row) -> dict:
    """The answer /predict must give for one row, computed here from the model itself."""
    probs = model.predict_proba(np.asarray([row], dtype=np.float64))[0]
    best = int(np.argmax(probs))
    return {
        "prediction": IRIS_CLASSES[best],
        "class_id": best,
        "probabilities": {name: pytest.approx(float(p)) for name, p in zip(IRIS_CLASSES, probs, strict=True)},
    }


def test_integers_and_a_charset_in_the_content_type_are_accepted(server, forest):
    response = post(
        server, data='{"features": [6, 3, 5, 2]}', headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 200
    assert response.json() == model_answer(forest, [6.0, 3.0, 5.0, 2.0])


def test_extra_keys_are_ignored(server):
    response = post(server, json={**GOOD, "request_id": "abc"})
    assert response.status_code == 200 and response.json()["prediction"] == "setosa"


TOO_BIG = MAX_CONTENT_LENGTH + 1

# name: (request keyword arguments, expected status, expected code, a word the message must contain)
BAD_REQUESTS = {
    "no body": ({}, 400, "empty_body", "empty"),
    "empty JSON body": ({"data": b"", "headers": JSON}, 400, "empty_body", "empty"),
    "whitespace body": ({"data": b"  \n", "headers": JSON}, 400, "empty_body", "empty"),
    "not JSON": ({"data": b"features=1,2,3,4", "headers": JSON}, 400, "invalid_json", "not valid JSON"),
    "truncated JSON": ({"data": b'{"features": [5.1, 3.5', "headers": JSON}, 400, "invalid_json", "not valid JSON"),
    "not UTF-8": ({"data": b'{"features": "\xff\xfe"}', "headers": JSON}, 400, "invalid_json", "UTF-8"),
    "form data": ({"data": {"features": "5.1"}}, 415, "unsupported_media_type", "application/json"),
    "text/plain": (
        {"data": json.dumps(GOOD), "headers": {"Content-Type": "text/plain"}},
        415,
        "unsupported_media_type",
        "text/plain",
    ),
    "JSON array body": ({"json": [5.1, 3.5, 1.4, 0.2]}, 400, "invalid_body", "object"),
    "JSON string body": ({"json": "5.1,3.5,1.4,0.2"}, 400, "invalid_body", "object"),
    "JSON null body": ({"data": b"null", "headers": JSON}, 400, "invalid_body", "object"),
    "features missing": ({"json": {"feature": [5.1, 3.5, 1.4, 0.2]}}, 400, "missing_features", "missing"),
    "features a string": ({"json": {"features": "5.1,3.5,1.4,0.2"}}, 400, "invalid_features", "list"),
    "features an object": ({"json": {"features": {"a": 1}}}, 400, "invalid_features", "list"),
    "features a number": ({"json": {"features": 5.1}}, 400, "invalid_features", "list"),
    "features null": ({"json": {"features": None}}, 400, "invalid_features", "list"),
    "too few features": ({"json": {"features": [5.1, 3.5, 1.4]}}, 400, "invalid_features", "exactly 4"),
    "too many features": ({"json": {"features": [5.1, 3.5, 1.4, 0.2, 9.9]}}, 400, "invalid_features", "exactly 4"),
    "empty features": ({"json": {"features": []}}, 400, "invalid_features", "exactly 4"),
    "a string feature": ({"json": {"features": [5.1, "3.5", 1.4, 0.2]}}, 400, "invalid_features", "features[1]"),
    "a null feature": ({"json": {"features": [5.1, 3.5, None, 0.2]}}, 400, "invalid_features", "features[2]"),
    "a nested list": ({"json": {"features": [[5.1, 3.5, 1.4, 0.2]]}}, 400, "invalid_features", "exactly 4"),
    "a list feature": ({"json": {"features": [5.1, 3.5, 1.4, [0.2]]}}, 400, "invalid_features", "features[3]"),
    "a boolean feature": ({"json": {"features": [True, 3.5, 1.4, 0.2]}}, 400, "invalid_features", "boolean"),
    "NaN": ({"data": b'{"features": [NaN, 3.5, 1.4, 0.2]}', "headers": JSON}, 400, "invalid_json", "NaN"),
    "Infinity": (
        {"data": b'{"features": [5.1, Infinity, 1.4, 0.2]}', "headers": JSON},
        400,
        "invalid_json",
        "Infinity",
    ),
    "-Infinity": (
        {"data": b'{"features": [5.1, 3.5, -Infinity, 0.2]}', "headers": JSON},
        400,
        "invalid_json",
        "Infinity",
    ),
    "1e999 overflows to infinity": (
        {"data": b'{"features": [1e999, 3.5, 1.4, 0.2]}', "headers": JSON},
        400,
        "invalid_features",
        "finite",
    ),
    "3.5e38 overflows float32": (
        {"json": {"features": [5.1, 3.5, 1.4, 3.5e38]}},
        400,
        "invalid_features",
        "features[3]",
    ),
    "-1e300": ({"json": {"features": [-1e300, 3.5, 1.4, 0.2]}}, 400, "invalid_features", "finite"),
    "a 400-digit integer": (
        {"data": b'{"features": [1' + b"0" * 400 + b", 3.5, 1.4, 0.2]}", "headers": JSON},
        400,
        "invalid_features",
        "finite",
    ),
    "deeply nested JSON": ({"data": b"[" * 5000 + b"]" * 5000, "headers": JSON}, 400, "invalid_json", "not valid JSON"),
    "body over the limit": ({"data": b" " * TOO_BIG, "headers": JSON}, 413, "body_too_large", "too large"),
    "10 MB body": ({"data": b"x" * 10_000_000, "headers": JSON}, 413, "body_too_large", "too large"),
    "a million features": ({"json": {"features": [1.0] * 1_000_000}}, 413, "body_too_large", "too large"),
    "chunked body over the limit": (
        {"data": iter([b"[" + b"1," * 4000] * 20), "headers": JSON},
        413,
        "body_too_large",
        "too large",
    ),
}


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_bad_input_gives_a_clear_4xx_json_error_and_the_server_keeps_serving(server, name):
    kwargs, status, code, word = BAD_REQUESTS[name]
    response = post(server, **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "code"}
    assert body["code"] == code
    assert word in body["error"]
    assert "Traceback" not in response.text
    assert_still_serves(server)


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/", 404, "not_found"),
        ("GET", "/predictions", 404, "not_found"),
        ("POST", "/health/", 404, "not_found"),
        ("GET", "/predict", 405, "method_not_allowed"),
        ("PUT", "/predict", 405, "method_not_allowed"),
        ("DELETE", "/health", 405, "method_not_allowed"),
    ],
)
def test_unknown_paths_and_wrong_methods_answer_json(server, method, path, status, code):
    response = requests.request(method, server.url + path, json=GOOD, timeout=10)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["code"] == code and path in body["error"]
    if status == 405:
        assert "POST" in response.headers["Allow"] or "GET" in response.headers["Allow"]
    assert_still_serves(server)


def test_request_size_limit_is_configurable(forest):
    with serve(create_app(forest, max_content_length=64)) as srv:
        small = requests.post(srv.url + "/predict", json=GOOD, timeout=10)
        padded = requests.post(srv.url + "/predict", json={**GOOD, "pad": "x" * 64}, timeout=10)
    assert small.status_code == 200 and small.json()["prediction"] == "setosa"
    assert padded.status_code == 413 and "64 bytes" in padded.json()["error"]


def test_a_model_for_a_different_feature_count_gives_500_json_without_a_traceback_then_keeps_serving(caplog):
    split = iris_split()
    three_features = RandomForestClassifier(n_estimators=5, random_state=0).fit(split.X_train[:, :3], split.y_train)
    with serve(create_app(three_features)) as srv, caplog.at_level(logging.ERROR, "course_lib.apps.iris_flask"):
        failures = [requests.post(srv.url + "/predict", json=GOOD, timeout=10) for _ in range(3)]
        health = requests.get(srv.url + "/health", timeout=10)
    assert [r.status_code for r in failures] == [500, 500, 500]
    for response in failures:
        assert response.headers["Content-Type"] == "application/json"
        assert response.json() == {
            "error": "internal server error; the failure was logged on the server",
            "code": "internal_error",
        }
        assert "Traceback" not in response.text and "features" not in response.text
    assert health.json()["status"] == "healthy"
    logged = [r for r in caplog.records if r.name == "course_lib.apps.iris_flask"]
    assert len(logged) == 3 and all(r.exc_info and r.exc_info[0] is ValueError for r in logged)
    assert "expecting 3 features" in str(logged[0].exc_info[1])


def test_class_names_follow_the_models_classes():
    split = iris_split()
    keep = split.y_train > 0  # a model that only knows versicolor (1) and virginica (2)
    model = RandomForestClassifier(n_estimators=10, random_state=0).fit(split.X_train[keep], split.y_train[keep])
    with serve(create_app(model)) as srv:
        body = requests.post(srv.url + "/predict", json={"features": [6.3, 3.3, 6.0, 2.5]}, timeout=10).json()
    assert list(body["probabilities"]) == ["versicolor", "virginica"]
    assert body["prediction"] == "virginica" and body["class_id"] == 2


def test_default_model_is_the_source_forest():
    app = create_app()
    model = app.config["IRIS_MODEL"]
    assert isinstance(model, RandomForestClassifier)
    assert model.n_estimators == 100 and model.random_state == 42


def test_a_model_without_predict_proba_or_not_fitted_is_refused_at_start():
    split = iris_split()
    with pytest.raises(TypeError, match="predict_proba"):
        create_app(LinearSVC().fit(split.X_train, split.y_train))
    with pytest.raises(TypeError, match="fitted"):
        create_app(RandomForestClassifier())


def test_concurrent_clients_get_correct_answers(server, forest, post_concurrently):
    rows = iris_rows(40, seed=7)
    answers = post_concurrently(server.url + "/predict", rows)
    assert answers == [model_answer(forest, row) for row in rows]
    assert len({answer["class_id"] for answer in answers}) == 3  # a mix-up between clients would show


def test_flask_test_client_gives_the_same_answers_in_process(forest):
    client = create_app(forest).test_client()
    assert client.post("/predict", json=GOOD).get_json()["prediction"] == "setosa"
    assert client.post("/predict", json={"features": [1, 2]}).status_code == 400
    assert client.get("/nope").get_json()["code"] == "not_found"


def test_an_extra_validation_rule_can_be_plugged_in(forest):
    from course_lib.apps.iris_flask import InputError, parse_features

    def no_negatives(payload) -> list[float]:
        features = parse_features(payload)
        if min(features) < 0:
            raise InputError("measurements cannot be negative", "out_of_range")
        return features

    with serve(create_app(forest, validate=no_negatives)) as srv:
        bad = requests.post(srv.url + "/predict", json={"features": [5.1, -3.5, 1.4, 0.2]}, timeout=10)
        good = requests.post(srv.url + "/predict", json=GOOD, timeout=10)
    assert bad.status_code == 400 and bad.json() == {"error": "measurements cannot be negative", "code": "out_of_range"}
    assert good.json()["prediction"] == "setosa"


def test_405_names_the_allowed_methods_in_a_stable_order(server):
    for _ in range(3):
        response = requests.get(server.url + "/predict", timeout=10)
        assert response.json()["error"] == "GET is not allowed on /predict; allowed: OPTIONS, POST"
        assert set(response.headers["Allow"].split(", ")) == {"OPTIONS", "POST"}


def test_any_json_body_gets_200_or_a_4xx_json_error_never_500(server):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )
    bodies = (
        values
        | st.fixed_dictionaries({"features": values})
        | st.fixed_dictionaries({"features": st.lists(scalars | st.floats(), min_size=3, max_size=5)})
    )
    session = requests.Session()

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(bodies)
    def check(body):
        response = session.post(server.url + "/predict", data=json.dumps(body), headers=JSON, timeout=10)
        assert response.status_code in (200, 400, 413), (body, response.status_code, response.text)
        assert response.headers["Content-Type"] == "application/json"
        assert ("prediction" in response.json()) == (response.status_code == 200)

    try:
        check()
    finally:
        session.close()
    assert_still_serves(server)


def test_a_long_unknown_path_is_not_echoed_in_full(server):
    response = requests.get(server.url + "/" + "a" * 5000, timeout=10)
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    assert len(response.json()["error"]) < 300
