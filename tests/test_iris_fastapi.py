"""The iris FastAPI app (course_lib.apps.iris_fastapi) over real HTTP: answers, 4xx for bad input, docs, model I/O.

Most tests talk to conftest's session server `iris_fastapi_server` (the app around the session's trained `net`).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests
import torch

from course_lib.apps.async_pitfall import STYLES, create_pitfall_app
from course_lib.apps.iris_fastapi import (
    MAX_BODY_BYTES,
    VERSION,
    TorchIrisClassifier,
    create_app,
    json_safe,
)
from course_lib.apps.iris_schemas import MAX_BATCH, MAX_CM
from course_lib.data import IRIS_CLASSES, iris_rows
from course_lib.models import save_state_dict
from course_lib.servers import serve

GOOD = [5.1, 3.5, 1.4, 0.2]
JSON = {"Content-Type": "application/json"}


def assert_still_serves(server) -> None:
    """The next good request after a failure is answered normally."""
    response = requests.post(server.url + "/predict", json={"features": GOOD}, timeout=30)
    assert response.status_code == 200
    assert response.json()["class_name"] == "setosa"


def strict_json(text: str) -> object:
    """Parse standard JSON only: NaN, Infinity and -Infinity literals fail the test."""
    return json.loads(text, parse_constant=lambda name: pytest.fail(f"non-standard JSON constant {name}"))


def network_answers(net, rows) -> list[dict]:
    """The answers /predict must give for rows, computed here from the network itself (softmax, argmax)."""
    with torch.inference_mode():
        probs = torch.softmax(net(torch.tensor(np.asarray(rows), dtype=torch.float32)), dim=1)
    best = probs.argmax(dim=1).tolist()
    return [
        {"prediction": b, "class_name": IRIS_CLASSES[b], "confidence": pytest.approx(float(p[b]), rel=1e-5)}
        for p, b in zip(probs, best, strict=True)
    ]


def test_health(iris_fastapi_server):
    response = requests.get(iris_fastapi_server.url + "/health", timeout=10)
    assert response.status_code == 200
    assert response.json() == {"status": "healthy", "version": VERSION, "model": "SimpleNN"}


def test_the_source_request_gives_setosa(iris_fastapi_server):
    response = requests.post(iris_fastapi_server.url + "/predict", json={"features": GOOD}, timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["prediction", "class_name", "confidence"]
    assert body["prediction"] == 0 and body["class_name"] == "setosa"
    assert 0.9 < body["confidence"] <= 1.0


def test_trained_network_separates_the_three_classes(iris_fastapi_server):
    rows = {"setosa": GOOD, "versicolor": [6.0, 2.7, 4.2, 1.3], "virginica": [6.9, 3.1, 5.4, 2.1]}
    for name, features in rows.items():
        body = requests.post(iris_fastapi_server.url + "/predict", json={"features": features}, timeout=10).json()
        assert body["class_name"] == name and body["prediction"] == IRIS_CLASSES.index(name)


def test_answers_match_the_network_in_process(iris_fastapi_server, net):
    rows = iris_rows(25, seed=4)
    with requests.Session() as session:
        answers = [
            session.post(iris_fastapi_server.url + "/predict", json={"features": row.tolist()}, timeout=10).json()
            for row in rows
        ]
    assert answers == network_answers(net, rows)
    assert len({answer["prediction"] for answer in answers}) == 3  # the rows cover every class


def test_batch_keeps_order_and_matches_the_network(iris_fastapi_server, net):
    rows = iris_rows(MAX_BATCH, seed=9)
    batch = requests.post(iris_fastapi_server.url + "/predict/batch", json={"instances": rows.tolist()}, timeout=10)
    assert batch.status_code == 200
    assert batch.json() == {"predictions": network_answers(net, rows)}
    reversed_batch = requests.post(
        iris_fastapi_server.url + "/predict/batch", json={"instances": rows[::-1].tolist()}, timeout=10
    )
    assert reversed_batch.json()["predictions"] == network_answers(net, rows)[::-1]


def test_integers_are_accepted_as_numbers(iris_fastapi_server, net):
    response = requests.post(
        iris_fastapi_server.url + "/predict", data='{"features": [6, 3, 5, 2]}', headers=JSON, timeout=10
    )
    assert response.status_code == 200
    assert response.json() == network_answers(net, [[6.0, 3.0, 5.0, 2.0]])[0]


def test_zero_is_a_valid_measurement(iris_fastapi_server, net):
    response = requests.post(iris_fastapi_server.url + "/predict", json={"features": [0, 0, 0, 0]}, timeout=10)
    assert response.status_code == 200
    assert response.json() == network_answers(net, [[0.0] * 4])[0]


def test_the_largest_accepted_measurement_gets_the_networks_answer(iris_fastapi_server, net):
    response = requests.post(iris_fastapi_server.url + "/predict", json={"features": [MAX_CM] * 4}, timeout=10)
    assert response.status_code == 200, response.text
    assert response.json() == network_answers(net, [[MAX_CM] * 4])[0]


def test_the_next_number_above_the_largest_measurement_is_refused(iris_fastapi_server):
    just_over = float(np.nextafter(MAX_CM, np.inf))
    response = requests.post(
        iris_fastapi_server.url + "/predict", json={"features": [5.1, 3.5, 1.4, just_over]}, timeout=10
    )
    assert response.status_code == 422
    assert [(e["type"], e["loc"]) for e in response.json()["detail"]] == [("less_than_equal", ["body", "features", 3])]


BAD_PREDICT = {
    "NaN literal": ('{"features": [NaN, 3.5, 1.4, 0.2]}', "finite_number"),
    "Infinity literal": ('{"features": [5.1, Infinity, 1.4, 0.2]}', "finite_number"),
    "-Infinity literal": ('{"features": [5.1, 3.5, -Infinity, 0.2]}', "finite_number"),
    "number overflowing to inf": ('{"features": [1e999, 3.5, 1.4, 0.2]}', "finite_number"),
    "negative measurement": ('{"features": [5.1, -3.5, 1.4, 0.2]}', "greater_than_equal"),
    "longer than a metre": ('{"features": [5.1, 3.5, 1.4, 100.5]}', "less_than_equal"),
    "1e308 would overflow float32": ('{"features": [5.1, 3.5, 1.4, 1e308]}', "less_than_equal"),
    "3.5e38 would give inf logits and a NaN probability": ('{"features": [5.1, 3.5, 1.4, 3.5e38]}', "less_than_equal"),
    "string number": ('{"features": ["5.1", 3.5, 1.4, 0.2]}', "float_type"),
    "word": ('{"features": ["abc", 3.5, 1.4, 0.2]}', "float_type"),
    "boolean": ('{"features": [true, 3.5, 1.4, 0.2]}', "float_type"),
    "null element": ('{"features": [null, 3.5, 1.4, 0.2]}', "float_type"),
    "nested list": ('{"features": [[5.1], 3.5, 1.4, 0.2]}', "float_type"),
    "three features": ('{"features": [5.1, 3.5, 1.4]}', "too_short"),
    "five features": ('{"features": [5.1, 3.5, 1.4, 0.2, 1.0]}', "too_long"),
    "empty list": ('{"features": []}', "too_short"),
    "features is a string": ('{"features": "5.1,3.5,1.4,0.2"}', "list_type"),
    "features is a number": ('{"features": 5.1}', "list_type"),
    "features is null": ('{"features": null}', "list_type"),
    "features missing": ('{"values": [5.1, 3.5, 1.4, 0.2]}', "missing"),
    "extra field (forbidden)": ('{"features": [5.1, 3.5, 1.4, 0.2], "unit": "mm"}', "extra_forbidden"),
    "body is a list": ("[5.1, 3.5, 1.4, 0.2]", "model_attributes_type"),
    "body is a number": ("42", "model_attributes_type"),
    "body is a string": ('"features"', "model_attributes_type"),
    "empty object": ("{}", "missing"),
    "malformed JSON": ('{"features": [5.1, 3.5,', "json_invalid"),
    "trailing garbage": ('{"features": [5.1, 3.5, 1.4, 0.2]} x', "json_invalid"),
    "empty body": ("", "missing"),
}


@pytest.mark.parametrize("case", list(BAD_PREDICT), ids=list(BAD_PREDICT))
def test_bad_input_gets_422_json_and_the_server_keeps_serving(iris_fastapi_server, case):
    body, error_type = BAD_PREDICT[case]
    response = requests.post(iris_fastapi_server.url + "/predict", data=body, headers=JSON, timeout=10)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/json"
    detail = strict_json(response.text)["detail"]  # a bare NaN/Infinity echoed back would fail here
    assert error_type in [error["type"] for error in detail], detail
    assert_still_serves(iris_fastapi_server)


def test_nan_echo_is_strict_json(iris_fastapi_server):
    response = requests.post(
        iris_fastapi_server.url + "/predict", data='{"features": [NaN, 1, 1, 1]}', headers=JSON, timeout=10
    )
    detail = strict_json(response.text)["detail"]
    assert detail[0]["input"] == "NaN" and detail[0]["loc"] == ["body", "features", 0]


def test_error_points_at_the_bad_element(iris_fastapi_server):
    response = requests.post(iris_fastapi_server.url + "/predict", json={"features": [5.1, 3.5, -1.0, 0.2]}, timeout=10)
    assert response.json()["detail"][0]["loc"] == ["body", "features", 2]


def test_text_plain_body_is_refused(iris_fastapi_server):
    response = requests.post(
        iris_fastapi_server.url + "/predict",
        data=json.dumps({"features": GOOD}),
        headers={"Content-Type": "text/plain"},
        timeout=10,
    )
    assert response.status_code == 422 and response.json()["detail"][0]["type"] == "model_attributes_type"


def test_huge_body_gets_413_json(iris_fastapi_server):
    response = requests.post(
        iris_fastapi_server.url + "/predict", data=b" " * (MAX_BODY_BYTES + 1), headers=JSON, timeout=30
    )
    assert response.status_code == 413
    assert "too large" in response.json()["detail"]
    assert_still_serves(iris_fastapi_server)


def test_huge_body_without_content_length_gets_413(iris_fastapi_server):
    chunks = (b" " * 4096 for _ in range(MAX_BODY_BYTES // 4096 + 2))  # a generator is sent chunked
    response = requests.post(iris_fastapi_server.url + "/predict", data=chunks, headers=JSON, timeout=30)
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert response.json() == {"detail": f"request body too large (limit: {MAX_BODY_BYTES} bytes)"}
    assert_still_serves(iris_fastapi_server)


def test_body_of_exactly_the_limit_is_read(iris_fastapi_server, net):
    body = json.dumps({"features": GOOD}).ljust(MAX_BODY_BYTES)
    assert len(body) == MAX_BODY_BYTES
    response = requests.post(iris_fastapi_server.url + "/predict", data=body, headers=JSON, timeout=30)
    assert response.status_code == 200
    assert response.json() == network_answers(net, [GOOD])[0]


def test_deeply_nested_json_is_a_400(iris_fastapi_server):
    body = '{"features": ' + "[" * 5000 + "]" * 5000 + "}"
    response = requests.post(iris_fastapi_server.url + "/predict", data=body, headers=JSON, timeout=30)
    assert response.status_code == 400
    assert response.json() == {"detail": "There was an error parsing the body"}
    assert_still_serves(iris_fastapi_server)


BAD_BATCH = {
    "empty batch": ({"instances": []}, "too_short"),
    "too many rows": ({"instances": [GOOD] * (MAX_BATCH + 1)}, "too_long"),
    "instances missing": ({"rows": [GOOD]}, "missing"),
    "instances is a row": ({"instances": GOOD}, "list_type"),
    "short row": ({"instances": [GOOD, [1.0, 2.0]]}, "too_short"),
    "negative in row": ({"instances": [GOOD, [1.0, 2.0, -3.0, 4.0]]}, "greater_than_equal"),
    "string in row": ({"instances": [GOOD, [1.0, "x", 3.0, 4.0]]}, "float_type"),
    "extra field": ({"instances": [GOOD], "limit": 3}, "extra_forbidden"),
}


@pytest.mark.parametrize("case", list(BAD_BATCH), ids=list(BAD_BATCH))
def test_bad_batch_gets_422(iris_fastapi_server, case):
    body, error_type = BAD_BATCH[case]
    response = requests.post(iris_fastapi_server.url + "/predict/batch", json=body, timeout=10)
    assert response.status_code == 422
    assert error_type in [error["type"] for error in response.json()["detail"]]


def test_nan_in_a_batch_row_is_a_422_with_its_position(iris_fastapi_server):
    body = '{"instances": [[5.1, 3.5, 1.4, 0.2], [1, 2, Infinity, 4]]}'
    response = requests.post(iris_fastapi_server.url + "/predict/batch", data=body, headers=JSON, timeout=10)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "instances", 1, 2]


@pytest.mark.parametrize(
    "method, path, status, detail, allow",
    [
        ("GET", "/nowhere", 404, "Not Found", None),
        ("GET", "/predict", 405, "Method Not Allowed", "POST"),
        ("DELETE", "/health", 405, "Method Not Allowed", "GET"),
        ("PUT", "/predict/batch", 405, "Method Not Allowed", "POST"),
    ],
)
def test_unknown_paths_and_methods_are_json(iris_fastapi_server, method, path, status, detail, allow):
    response = requests.request(method, iris_fastapi_server.url + path, timeout=10)
    assert response.status_code == status
    assert response.json() == {"detail": detail}
    assert response.headers.get("allow") == allow


def test_concurrent_clients_get_the_networks_answers(iris_fastapi_server, net, post_concurrently):
    rows = iris_rows(40, seed=2)
    answers = post_concurrently(iris_fastapi_server.url + "/predict", rows)
    assert answers == network_answers(net, rows)
    assert len({answer["prediction"] for answer in answers}) == 3  # a mix-up between clients would show


def test_openapi_lists_the_operations_and_the_schema_rules(iris_fastapi_server):
    spec = requests.get(iris_fastapi_server.url + "/openapi.json", timeout=10).json()
    assert spec["openapi"].startswith("3.1")
    assert {"/predict", "/predict/batch", "/health"} <= set(spec["paths"])
    features = spec["components"]["schemas"]["IrisFeatures"]
    assert features["additionalProperties"] is False
    field = features["properties"]["features"]
    assert field["minItems"] == field["maxItems"] == 4 and field["items"]["minimum"] == 0


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_doc_pages_reference_only_local_assets(iris_fastapi_server, path):
    html = requests.get(iris_fastapi_server.url + path, timeout=10).text
    assert "cdn.jsdelivr.net" not in html and "fonts.googleapis" not in html
    assert "/static-offline-docs/" in html
    for asset in ["swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js"]:
        response = requests.get(f"{iris_fastapi_server.url}/static-offline-docs/{asset}", timeout=10)
        assert response.status_code == 200 and len(response.content) > 10_000


def test_a_state_dict_path_is_served_with_the_networks_answers(tmp_path, net):
    path = save_state_dict(net, tmp_path / "iris_nn.pt")
    rows = iris_rows(10, seed=1)
    with serve(create_app(path)) as srv:
        body = requests.post(srv.url + "/predict/batch", json={"instances": rows.tolist()}, timeout=10).json()
    assert body == {"predictions": network_answers(net, rows)}


def test_a_scikit_learn_model_can_be_served_too(forest):
    rows = iris_rows(20, seed=5)
    probs = forest.predict_proba(rows.astype(np.float64))
    with serve(create_app(forest)) as srv:
        assert requests.get(srv.url + "/health", timeout=10).json()["model"] == "RandomForestClassifier"
        answers = [
            requests.post(srv.url + "/predict", json={"features": row.tolist()}, timeout=10).json() for row in rows
        ]
    assert answers == [
        {
            "prediction": int(p.argmax()),
            "class_name": IRIS_CLASSES[int(p.argmax())],
            "confidence": pytest.approx(float(p.max())),
        }
        for p in probs
    ]


def test_torch_classifier_gives_the_networks_softmax(net):
    rows = iris_rows(5)
    probs = TorchIrisClassifier(net).predict_proba(rows.astype(np.float64))
    with torch.inference_mode():
        expected = torch.softmax(net(torch.from_numpy(rows)), dim=1).numpy()
    assert probs.shape == (5, 3) and probs.dtype == np.float64
    np.testing.assert_allclose(probs, expected, rtol=1e-6)


def test_model_of_wrong_kind_is_refused():
    with pytest.raises(TypeError, match=r"must be an nn.Module, a state-dict path or have predict_proba \(got object"):
        create_app(model=object())


def test_json_safe_replaces_non_finite_numbers():
    values = {"a": [float("nan"), float("inf"), -float("inf"), 1.5], "b": {"c": (float("nan"),)}}
    assert json_safe(values) == {"a": ["NaN", "Infinity", "-Infinity", 1.5], "b": {"c": ["NaN"]}}


@pytest.mark.parametrize("style", STYLES)
def test_every_pitfall_style_answers_correctly(net, style):
    rows = iris_rows(6, seed=1)
    with serve(create_pitfall_app(style, net, work_s=0.0)) as srv:
        assert requests.get(srv.url + "/health", timeout=10).json() == {"status": "healthy", "style": style}
        answers = [
            requests.post(srv.url + "/predict", json={"features": row.tolist()}, timeout=10).json() for row in rows
        ]
        short = requests.post(srv.url + "/predict", json={"features": [1, 2]}, timeout=10)
    assert answers == network_answers(net, rows)
    assert short.status_code == 422 and short.json()["detail"][0]["type"] == "too_short"


def test_pitfall_style_must_be_known():
    with pytest.raises(ValueError, match=r"style must be one of \('blocking', 'def', 'threadpool'\), got 'fast'"):
        create_pitfall_app("fast")  # type: ignore[arg-type]


def test_doc_pages_carry_a_local_only_content_security_policy(iris_fastapi_server):
    for path in ["/docs", "/redoc"]:
        policy = requests.get(iris_fastapi_server.url + path, timeout=10).headers["content-security-policy"]
        assert "default-src 'self'" in policy and "img-src 'self' data:" in policy
    assert "content-security-policy" not in requests.get(iris_fastapi_server.url + "/health", timeout=10).headers
