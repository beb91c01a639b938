"""Checks for the exercises of notebook 02 (Flask inference API): each serves the learner's app over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import requests

from course_lib.apps.iris_flask import create_app
from course_lib.data import IRIS_CLASSES, iris_rows
from course_lib.models import train_iris_forest
from course_lib.servers import serve

GOOD = {"features": [5.1, 3.5, 1.4, 0.2]}


@lru_cache(maxsize=1)
def _model() -> Any:
    """The source's forest, trained once per kernel."""
    return train_iris_forest()[0]


def _json(response: requests.Response) -> Any:
    """The response's JSON body, or an AssertionError saying it is not JSON."""
    assert response.headers.get("Content-Type", "").startswith("application/json"), (
        f"{response.request.method} {response.url} の応答が JSON ではありません（Content-Type: "
        f"{response.headers.get('Content-Type')}）"
    )
    return response.json()


def _assert_json_error(response: requests.Response, statuses: set[int], what: str) -> dict[str, Any]:
    """The response is a JSON error {"error": ...} with one of the expected statuses."""
    assert response.status_code in statuses, (
        f"{what} に {sorted(statuses)} のどれかを期待しましたが {response.status_code} でした: {response.text[:200]}"
    )
    body = _json(response)
    assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], (
        f"{what} のエラー本文に、理由を書いた \"error\" がありません: {body}"
    )
    return body


def check_model_info(create_app_with_model_info: Callable[[Any], Any]) -> None:
    """Exercise 1: GET /model-info describes the model; /predict still works."""
    model = _model()
    app = create_app_with_model_info(model)
    with serve(app) as server:
        response = requests.get(server.url + "/model-info", timeout=10)
        predict = requests.post(server.url + "/predict", json=GOOD, timeout=10)
    assert response.status_code == 200, f"GET /model-info のステータスが {response.status_code} です（200 を期待）"
    info = _json(response)
    expected = {"model": "RandomForestClassifier", "n_features": 4, "classes": IRIS_CLASSES, "n_estimators": 100}
    for key, value in expected.items():
        assert key in info, f"/model-info に \"{key}\" がありません: {info}"
        assert info[key] == value, f"/model-info の \"{key}\" が {info[key]!r} です（{value!r} を期待）"
    assert predict.status_code == 200 and predict.json().get("prediction") == "setosa", (
        "/model-info を足した後も POST /predict が setosa と答えるようにしてください"
    )


def check_batch_predict(create_app_with_batch: Callable[..., Any]) -> None:
    """Exercise 2: POST /predict/batch {"instances": [[4 numbers], ...]} → {"predictions": [...]}, with limits."""
    model = _model()
    app = create_app_with_batch(model, max_rows=100)
    rows = iris_rows(12, seed=5)
    expected = model.predict_proba(rows.astype(np.float64))
    url_path = "/predict/batch"
    with serve(app) as server, requests.Session() as session:
        url = server.url + url_path
        good = session.post(url, json={"instances": rows.tolist()}, timeout=10)
        assert good.status_code == 200, f"正しいバッチに {good.status_code} が返りました（200 を期待）: {good.text[:200]}"
        predictions = _json(good).get("predictions")
        assert isinstance(predictions, list) and len(predictions) == len(rows), (
            f"\"predictions\" は入力と同じ {len(rows)} 件のリストにしてください: {str(predictions)[:200]}"
        )
        for i, (item, probs) in enumerate(zip(predictions, expected)):
            class_id = int(np.argmax(probs))
            assert item.get("class_id") == class_id and item.get("prediction") == IRIS_CLASSES[class_id], (
                f"{i} 件目の予測が違います: {item}（{IRIS_CLASSES[class_id]} を期待）"
            )
            got = [item.get("probabilities", {}).get(name) for name in IRIS_CLASSES]
            assert np.allclose(got, probs), f"{i} 件目の probabilities が違います: {item.get('probabilities')}"
        cases = {
            "\"instances\" がない本文": ({"rows": rows.tolist()}, {400}),
            "空の instances": ({"instances": []}, {400}),
            "リストでない instances": ({"instances": "5.1,3.5,1.4,0.2"}, {400}),
            "101 行（上限 100 行を超える）": ({"instances": [GOOD["features"]] * 101}, {400, 413}),
        }
        for what, (body, statuses) in cases.items():
            _assert_json_error(session.post(url, json=body, timeout=10), statuses, what)
        bad_row = session.post(url, json={"instances": [GOOD["features"], [5.1, "x", 1.4, 0.2]]}, timeout=10)
        message = _assert_json_error(bad_row, {400}, "2 行目に文字列を含むバッチ")["error"]
        assert "instances[1]" in message, f"エラーにはだめな行の位置（instances[1]）を書いてください: {message!r}"
        boolean_row = session.post(url, json={"instances": [[True, 3.5, 1.4, 0.2]]}, timeout=10)
        _assert_json_error(boolean_row, {400}, "真偽値を含む行")
        after = session.post(url, json={"instances": [GOOD["features"]]}, timeout=10)
        assert after.status_code == 200, "エラーの後、正しいバッチが成功しませんでした"


def check_plausible_measurements(plausible_measurements: Callable[[Any], list[float]]) -> None:
    """Exercise 3: a validate= rule: 4 numbers (as before), each in (0, 30] cm, else 400 code out_of_range."""
    assert plausible_measurements(GOOD) == GOOD["features"], "正しい入力では 4 つの数値のリストを返してください"
    model = _model()
    app = create_app(model, validate=plausible_measurements)
    with serve(app) as server, requests.Session() as session:
        url = server.url + "/predict"

        def post(features: Any) -> requests.Response:
            """POST /predict with these features."""
            return session.post(url, json={"features": features}, timeout=10)

        for features in ([5.1, 3.5, 1.4, 0.2], [30, 30, 30, 30], [0.1, 0.1, 0.1, 0.1]):
            response = post(features)
            assert response.status_code == 200, f"{features} は正しい入力ですが {response.status_code} が返りました"
        for features, index in (([5.1, -3.5, 1.4, 0.2], 1), ([5.1, 3.5, 0, 0.2], 2), ([5.1, 3.5, 1.4, 100], 3)):
            body = _assert_json_error(post(features), {400}, f"範囲外の {features}")
            assert body.get("code") == "out_of_range", f"範囲外のときは code を \"out_of_range\" にしてください: {body}"
            assert f"features[{index}]" in body["error"], f"エラーには範囲外の位置（features[{index}]）を書いてください: {body}"
        for features in (["5.1", 3.5, 1.4, 0.2], [5.1, 3.5], [True, 3.5, 1.4, 0.2]):
            body = _assert_json_error(post(features), {400}, f"{features}")
            assert body.get("code") == "invalid_features", (
                f"{features} は範囲の前に形式で拒否されるはずです（parse_features を先に呼びましたか？）: {body}"
            )
