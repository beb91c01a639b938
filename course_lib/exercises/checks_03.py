"""Checks for the exercises of notebook 03 (FastAPI inference API): each runs the learner's code over real HTTP."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import requests
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from course_lib.apps.async_pitfall import create_pitfall_app
from course_lib.apps.iris_fastapi import TorchIrisClassifier, validation_error
from course_lib.apps.iris_schemas import PredictionResponse
from course_lib.data import IRIS_CLASSES, iris_rows
from course_lib.models import train_simple_nn
from course_lib.servers import serve

GOOD = [5.1, 3.5, 1.4, 0.2]
JSON_HEADERS = {"Content-Type": "application/json"}


@lru_cache(maxsize=1)
def _net() -> Any:
    """SimpleNN trained once per kernel."""
    return train_simple_nn()[0]


def _rejects(schema: type[BaseModel], payload: Any, what: str) -> None:
    """schema.model_validate(payload) must raise ValidationError."""
    try:
        schema.model_validate(payload)
    except ValidationError:
        return
    raise AssertionError(f"{what} が通ってしまいました: {payload!r}")


def _json_422(response: requests.Response, what: str) -> list[dict[str, Any]]:
    """The response is a 422 with FastAPI's {"detail": [...]} body in strict JSON."""
    assert response.status_code == 422, f"{what} に 422 を期待しましたが {response.status_code} でした: {response.text[:200]}"
    body = response.json()
    assert isinstance(body.get("detail"), list) and body["detail"], f"{what} の本文に detail のリストがありません: {body}"
    return body["detail"]


def check_plausible_schema(schema: type[BaseModel]) -> None:
    """Exercise 1: a Pydantic v2 model with the strict 4-number rules plus a field_validator: every value ≤ 30 cm."""
    assert isinstance(schema, type) and issubclass(schema, BaseModel), "Pydantic の BaseModel を継承したクラスを渡してください"
    good = schema.model_validate({"features": GOOD})
    assert list(good.features) == GOOD, f"正しい入力の features がそのまま取り出せません: {good.features!r}"
    assert schema.model_validate({"features": [30, 30, 30, 0]}).features[0] == 30, "ちょうど 30 cm は受け付けてください"
    try:
        schema.model_validate({"features": [5.1, 35.0, 1.4, 0.2]})
    except ValidationError as exc:
        errors = exc.errors()
        assert any(e["type"] == "value_error" for e in errors), (
            f"30 cm を超える値は @field_validator の ValueError（type が value_error）で拒否してください: {errors}"
        )
        assert any("features[1]" in e["msg"] for e in errors), f"エラーメッセージに位置 features[1] を書いてください: {errors[0]['msg']!r}"
    else:
        raise AssertionError("35 cm（30 cm 超え）が通ってしまいました")
    cases = {
        "NaN": [math.nan, 3.5, 1.4, 0.2],
        "Infinity": [5.1, math.inf, 1.4, 0.2],
        "負の数": [5.1, -3.5, 1.4, 0.2],
        "文字列の数": ["5.1", 3.5, 1.4, 0.2],
        "真偽値": [True, 3.5, 1.4, 0.2],
        "3 個": [5.1, 3.5, 1.4],
        "5 個": [5.1, 3.5, 1.4, 0.2, 1.0],
    }
    for what, features in cases.items():
        _rejects(schema, {"features": features}, what)
    _rejects(schema, {"features": GOOD, "unit": "mm"}, "知らないフィールド")
    app = FastAPI()
    app.add_exception_handler(RequestValidationError, validation_error)

    def echo(request: Any) -> dict[str, Any]:
        return {"features": list(request.features)}

    echo.__annotations__ = {"request": schema, "return": dict}  # the learner's class, not a string annotation
    app.post("/check")(echo)

    with serve(app) as server, requests.Session() as session:
        url = server.url + "/check"
        assert session.post(url, json={"features": GOOD}, timeout=10).status_code == 200, "FastAPI の本文として正しい入力が通りません"
        detail = _json_422(session.post(url, json={"features": [5.1, 3.5, 31.0, 0.2]}, timeout=10), "31 cm を含む本文")
        assert detail[0]["loc"][:2] == ["body", "features"], f"エラーの loc が features を指していません: {detail[0]['loc']}"
        _json_422(session.post(url, data='{"features": [NaN, 3.5, 1.4, 0.2]}', headers=JSON_HEADERS, timeout=10), "NaN を含む本文")


def check_limited_batch(create_batch_app: Callable[..., FastAPI]) -> None:
    """Exercise 2: POST /predict/batch {"instances": [...]} → {"predictions": [...]}; over max_rows → 413, bad rows → 422."""
    net = _net()
    app = create_batch_app(net, max_rows=5)
    rows = iris_rows(5, seed=11)
    expected = TorchIrisClassifier(net).predict_proba(rows.astype(np.float64))
    with serve(app) as server, requests.Session() as session:
        url = server.url + "/predict/batch"
        good = session.post(url, json={"instances": rows.tolist()}, timeout=10)
        assert good.status_code == 200, f"5 行（上限ちょうど）のバッチに {good.status_code} が返りました: {good.text[:200]}"
        predictions = good.json().get("predictions")
        assert isinstance(predictions, list) and len(predictions) == 5, f"predictions は 5 件のリストにしてください: {str(predictions)[:200]}"
        for i, (item, probs) in enumerate(zip(predictions, expected)):
            PredictionResponse.model_validate(item)
            class_id = int(np.argmax(probs))
            assert item["prediction"] == class_id and item["class_name"] == IRIS_CLASSES[class_id], f"{i} 件目の予測が違います: {item}"
            assert abs(item["confidence"] - float(probs[class_id])) < 1e-5, f"{i} 件目の confidence が違います: {item}"
        too_many = session.post(url, json={"instances": [GOOD] * 6}, timeout=10)
        assert too_many.status_code == 413, f"6 行（上限 5 行を超える）には 413 を返してください（{too_many.status_code} でした）"
        message = str(too_many.json().get("detail"))
        assert "5" in message, f"413 のメッセージには上限（5 行）を書いてください: {message!r}"
        _json_422(session.post(url, json={"instances": []}, timeout=10), "空のバッチ")
        detail = _json_422(
            session.post(url, data='{"instances": [[5.1, 3.5, 1.4, 0.2], [1, NaN, 1, 1]]}', headers=JSON_HEADERS, timeout=10),
            "NaN を含む行",
        )
        assert detail[0]["loc"][:3] == ["body", "instances", 1], f"だめな行の位置（instances の 1 番）が loc にありません: {detail[0]['loc']}"
        _json_422(session.post(url, json={"instances": [[5.1, "x", 1.4, 0.2]]}, timeout=10), "文字列を含む行")
        assert session.post(url, json={"instances": [GOOD]}, timeout=10).status_code == 200, "エラーの後、正しいバッチが成功しませんでした"


def check_fixed_endpoint(create_fixed_app: Callable[..., FastAPI], health_p99_under_load: Callable[[FastAPI], float], work_s: float = 0.05) -> None:
    """Exercise 3: /predict still does its slow work but no longer blocks /health; the learner's p99 figure shows it."""
    net = _net()
    fixed = create_fixed_app(net, work_s=work_s)
    with serve(fixed) as server, requests.Session() as session:
        assert session.get(server.url + "/health", timeout=10).status_code == 200, "GET /health が 200 を返しません"
        started = time.perf_counter()
        response = session.post(server.url + "/predict", json={"features": GOOD}, timeout=30)
        took = time.perf_counter() - started
        assert response.status_code == 200 and response.json().get("class_name") == "setosa", (
            f"POST /predict が setosa を返しません: {response.status_code} {response.text[:200]}"
        )
        assert took >= work_s, "/predict の重い処理（slow_predict）を消さずに、イベントループを止めない書き方に直してください"
    blocking_p99 = health_p99_under_load(create_pitfall_app("blocking", net, work_s=work_s))
    fixed_p99 = health_p99_under_load(create_fixed_app(net, work_s=work_s))
    assert blocking_p99 > work_s * 1000, (
        f"ブロッキング版の p99 が {blocking_p99:.1f} ms でした。health_p99_under_load は /predict を送り続けながら /health を測り、"
        "p99 をミリ秒で返していますか？"
    )
    assert fixed_p99 * 3 < blocking_p99, (
        f"直した版の /health p99（{fixed_p99:.1f} ms）がブロッキング版（{blocking_p99:.1f} ms）と大差ありません。"
        "まだイベントループの上で重い処理をしていませんか？"
    )
