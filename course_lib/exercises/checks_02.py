"""Checks for the exercises of notebook 02 (Flask inference API): each serves the learner's app over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import requests
from sklearn.ensemble import RandomForestClassifier

from course_lib.apps.iris_flask import VERSION, InputError, create_app
from course_lib.data import IRIS_CLASSES, iris_rows, iris_split
from course_lib.models import train_iris_forest
from course_lib.servers import serve

GOOD = {"features": [5.1, 3.5, 1.4, 0.2]}
RANGE_CM = (0.0, 30.0)  # the plausible range of an iris measurement, the same rule as exercise 03


@lru_cache(maxsize=1)
def _model() -> Any:
    """The source's forest, trained once per kernel."""
    return train_iris_forest()[0]


@lru_cache(maxsize=1)
def _small_forest() -> Any:
    """A second forest with another number of trees: an answer that hard-codes 100 shows here."""
    split = iris_split()
    return RandomForestClassifier(n_estimators=7, random_state=0).fit(split.X_train, split.y_train)


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
        f'{what} のエラー本文に、理由を書いた "error" がありません: {body}'
    )
    return body


def _assert_predict_still_works(session: requests.Session, url: str) -> None:
    """POST /predict of the app the learner extended still answers setosa for the source's example."""
    predict = session.post(url + "/predict", json=GOOD, timeout=10)
    assert predict.status_code == 200 and _json(predict).get("prediction") == "setosa", (
        "機能を足した後も POST /predict が setosa と答えるようにしてください"
        "（create_app(model) のアプリに足しましたか？）"
    )


def check_model_info(create_app_with_model_info: Callable[[Any], Any]) -> None:
    """Exercise 1: GET /model-info describes the model it was given (five keys, read from the model); /predict works."""
    for model in (_model(), _small_forest()):
        with serve(create_app_with_model_info(model)) as server, requests.Session() as session:
            response = session.get(server.url + "/model-info", timeout=10)
            status = response.status_code
            assert status == 200, f"GET /model-info のステータスが {status} です（200 を期待）"
            info = _json(response)
            _assert_predict_still_works(session, server.url)
        assert isinstance(info, dict), f"/model-info は JSON のオブジェクトを返してください: {info!r}"
        expected = {
            "model": "RandomForestClassifier",
            "n_features": 4,
            "classes": IRIS_CLASSES,
            "n_estimators": model.n_estimators,
            "version": VERSION,
        }
        for key, value in expected.items():
            assert key in info, f'/model-info に "{key}" がありません（5 つのキーすべてを返してください）: {info}'
            assert info[key] == value, (
                f'n_estimators={model.n_estimators} のモデルで /model-info の "{key}" が {info[key]!r} でした'
                f"（{value!r} を期待。値は決め打ちにせず、渡されたモデルと VERSION から読み取ってください）"
            )


def _assert_same_predictions(predictions: Any, model: Any, rows: np.ndarray) -> None:
    """Each item has /predict's shape and the model's answer for its row, in the order of the rows."""
    assert isinstance(predictions, list) and len(predictions) == len(rows), (
        f'"predictions" は入力と同じ {len(rows)} 件のリストにしてください: {str(predictions)[:200]}'
    )
    classes = [int(c) for c in model.classes_]
    for i, (item, probs) in enumerate(zip(predictions, model.predict_proba(rows.astype(np.float64)), strict=True)):
        class_id = classes[int(np.argmax(probs))]
        assert isinstance(item, dict) and set(item) >= {"prediction", "class_id", "probabilities"}, (
            f"predictions[{i}] は /predict と同じ形（prediction・class_id・probabilities）にしてください: {item!r}"
        )
        assert item["class_id"] == class_id and item["prediction"] == IRIS_CLASSES[class_id], (
            f"predictions[{i}] が {item['prediction']!r} でした"
            f"（{IRIS_CLASSES[class_id]!r} を期待。入力と同じ順番ですか？）"
        )
        probabilities = item["probabilities"]
        assert isinstance(probabilities, dict) and set(probabilities) == set(IRIS_CLASSES), (
            f"predictions[{i}] の probabilities は {IRIS_CLASSES} をキーにした辞書にしてください: {probabilities!r}"
        )
        expected = {IRIS_CLASSES[c]: p for c, p in zip(classes, probs, strict=True)}
        assert np.allclose([probabilities[n] for n in IRIS_CLASSES], [expected[n] for n in IRIS_CLASSES]), (
            f"predictions[{i}] の probabilities が違います: {probabilities}"
        )


def _check_row_limit(session: requests.Session, url: str, max_rows: int) -> None:
    """Exactly max_rows rows are accepted, max_rows + 1 rows are a 400."""
    rows = [GOOD["features"]] * max_rows
    exact = session.post(url, json={"instances": rows}, timeout=30)
    assert exact.status_code == 200, (
        f"max_rows={max_rows} のアプリで、ちょうど {max_rows} 行に {exact.status_code} が返りました（200 を期待。"
        "上限ちょうどは受け付けます。>= ではなく > で比べてください）"
    )
    over = session.post(url, json={"instances": rows + [GOOD["features"]]}, timeout=30)
    what = f"max_rows={max_rows} のアプリへの {max_rows + 1} 行（上限を超える。max_rows を使いましたか？）"
    _assert_json_error(over, {400}, what)


def _check_bad_rows(session: requests.Session, url: str) -> None:
    """A bad row is a 400 naming its 0-based position, the reason parse_features gave, and its code."""
    good = GOOD["features"]
    cases = [
        ([good, [5.1, "x", 1.4, 0.2]], 1, "features[1]"),
        ([[5.1, 3.5, 1.4], good, good], 0, "exactly 4 numbers"),
        ([good, good, [True, 3.5, 1.4, 0.2]], 2, "features[0]"),
    ]
    for instances, index, reason in cases:
        what = f"instances[{index}] がだめなバッチ {instances}"
        body = _assert_json_error(session.post(url, json={"instances": instances}, timeout=10), {400}, what)
        message = body["error"]
        assert f"instances[{index}]" in message, (
            f"{what} のエラーには、だめな行の位置 instances[{index}]（0 から数える）を書いてください: {message!r}"
        )
        assert reason in message, (
            f"{what} のエラーには、parse_features が見つけた理由（{reason!r} を含むメッセージ）も残してください: "
            f"{message!r}"
        )
        assert body.get("code") == "invalid_features", (
            f'{what} の code は parse_features のエラーと同じ "invalid_features" にしてください: {body}'
        )


def check_batch_predict(create_app_with_batch: Callable[..., Any]) -> None:
    """Exercise 2: POST /predict/batch {"instances": [[4 numbers], ...]} → {"predictions": [...]}, with limits."""
    model = _model()
    max_rows = 8  # small, so that a learner's row-by-row answer stays quick; two limits catch a hard-coded one
    rows = iris_rows(max_rows, seed=5)  # mixed classes: a reordered answer shows
    with serve(create_app_with_batch(model, max_rows=max_rows)) as server, requests.Session() as session:
        url = server.url + "/predict/batch"
        good = session.post(url, json={"instances": rows.tolist()}, timeout=30)
        assert good.status_code == 200, (
            f"max_rows={max_rows} のアプリで、正しい {max_rows} 行のバッチに {good.status_code} が返りました"
            f"（200 を期待。上限ちょうどは受け付けます。>= ではなく > で比べましたか？）: {good.text[:200]}"
        )
        body = _json(good)
        assert isinstance(body, dict), f'応答は {{"predictions": [...]}} の形にしてください: {str(body)[:200]}'
        _assert_same_predictions(body.get("predictions"), model, rows)
        _check_row_limit(session, url, max_rows)
        cases = {
            '"instances" がない本文': {"rows": rows[:2].tolist()},
            "本文がオブジェクトでなく配列": rows[:2].tolist(),
            "空の instances": {"instances": []},
            "リストでない instances": {"instances": "5.1,3.5,1.4,0.2"},
        }
        for what, payload in cases.items():
            _assert_json_error(session.post(url, json=payload, timeout=30), {400}, what)
        _check_bad_rows(session, url)
        after = session.post(url, json={"instances": [GOOD["features"]]}, timeout=30)
        assert after.status_code == 200, "エラーの後、正しいバッチが成功しませんでした"
        _assert_predict_still_works(session, server.url)
    with serve(create_app_with_batch(model, max_rows=3)) as server, requests.Session() as session:
        _check_row_limit(session, server.url + "/predict/batch", 3)


def check_plausible_measurements(plausible_measurements: Callable[[Any], list[float]]) -> None:
    """Exercise 3: a validate= rule: 4 numbers (as before), each 0 ≤ x ≤ 30 cm, else 400 code out_of_range."""
    low, high = RANGE_CM
    edges = {"features": [low, high, 1.4, 0.2]}
    try:
        returned = plausible_measurements(edges)
    except InputError as error:
        raise AssertionError(
            f"{edges} は範囲内（0 以上 30 以下。0 と 30 ちょうども含む）ですが InputError が出ました: {error.message}"
        ) from None
    assert returned == edges["features"] and all(isinstance(v, float) for v in returned), (
        f"正しい入力 {edges} では 4 つの float のリスト {edges['features']} を返してください（{returned!r} でした）"
    )
    app = create_app(_model(), validate=plausible_measurements)
    with serve(app) as server, requests.Session() as session:
        url = server.url + "/predict"

        def post(features: Any) -> requests.Response:
            """POST /predict with these features."""
            return session.post(url, json={"features": features}, timeout=10)

        for features in ([5.1, 3.5, 1.4, 0.2], [high] * 4, [low] * 4, [low, high, low, high]):
            response = post(features)
            assert response.status_code == 200, (
                f"{features} は範囲内（0 以上 30 以下。0 と 30 ちょうども含む）ですが "
                f"{response.status_code} が返りました"
            )
        out_of_range = (
            ([30.01, 3.5, 1.4, 0.2], 0),
            ([5.1, -3.5, 1.4, 0.2], 1),
            ([5.1, 3.5, -0.01, 0.2], 2),
            ([5.1, 3.5, 1.4, 100], 3),
        )
        for features, index in out_of_range:
            body = _assert_json_error(post(features), {400}, f"範囲外（0 以上 30 以下でない）の {features}")
            assert body.get("code") == "out_of_range", f'範囲外のときは code を "out_of_range" にしてください: {body}'
            assert f"features[{index}]" in body["error"], (
                f"{features} のエラーには範囲外の位置（features[{index}]）を書いてください: {body}"
            )
        for features in (["5.1", 3.5, 1.4, 0.2], [5.1, 3.5], [True, 3.5, 1.4, 0.2]):
            body = _assert_json_error(post(features), {400}, f"{features}")
            assert body.get("code") == "invalid_features", (
                f"{features} は範囲の前に形式で拒否されるはずです（parse_features を先に呼びましたか？）: {body}"
            )
