"""Checks for the exercises of notebook 03 (FastAPI inference API): each runs the learner's code over real HTTP.

What a check can observe does not depend on how busy the machine is: the model records where it ran (on the
event loop's thread or not) and can be held mid-inference while /health is asked; the p99 helper is fed a server
whose slow answers are known in advance.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from functools import lru_cache
from typing import Any

import numpy as np
import requests
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError

from course_lib.apps.iris_fastapi import TorchIrisClassifier, predict_rows, validation_exception_handler
from course_lib.apps.iris_schemas import IrisFeatures, PredictionResponse
from course_lib.data import IRIS_CLASSES, iris_rows
from course_lib.models import train_simple_nn
from course_lib.servers import serve

__all__ = ["HeavyModel", "check_plausible_schema", "check_limited_batch", "check_fixed_endpoint"]

GOOD = [5.1, 3.5, 1.4, 0.2]
JSON_HEADERS = {"Content-Type": "application/json"}
HOLD_LIMIT_S = 30.0  # a held inference gives up waiting after this, so a wrong answer cannot hang a check
HEALTH_WAIT_S = 5.0  # /health on a free event loop answers in milliseconds even on a busy machine
PROBE_SLOW_EVERY = 5  # the p99 probe delays every 5th /health ...
PROBE_SLOW_S = 0.4  # ... by this much, so p99 is slow while p50 and the mean stay far below it
PROBE_MIN_HEALTH = 20  # the exercise asks for 20 measurements


@lru_cache(maxsize=1)
def _net() -> Any:
    """SimpleNN trained once per kernel."""
    return train_simple_nn()[0]


def _on_event_loop() -> bool:
    """True when the calling thread is running an asyncio event loop (a coroutine called us directly)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class HeavyModel:
    """A stand-in for a heavy model: the trained SimpleNN plus `work_s` of blocking work per call.

    It has predict_proba/classes_ like a scikit-learn model, so as_classifier() and predict_rows() take it. It
    counts its calls and rows, and how many calls ran on an event loop's thread (blocking every other request).
    Inside `held()`, each call waits for the gate instead of sleeping, so a check can ask /health while an
    inference is certainly still running.
    """

    def __init__(self, net: Any = None, work_s: float = 0.05) -> None:
        self._classifier = TorchIrisClassifier(_net() if net is None else net)
        self.classes_ = self._classifier.classes_
        self.work_s = work_s
        self.calls = 0
        self.rows = 0
        self.calls_on_event_loop = 0
        self._lock = threading.Lock()
        self._gate: threading.Event | None = None
        self._started = threading.Event()

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities of the real network, after work_s of blocking work (or after the gate opens)."""
        X = np.asarray(X, dtype=np.float64)
        with self._lock:
            self.calls += 1
            self.rows += len(X)
            self.calls_on_event_loop += _on_event_loop()
        gate = self._gate
        if gate is not None:
            self._started.set()
            gate.wait(HOLD_LIMIT_S)
        elif self.work_s > 0:
            time.sleep(self.work_s)
        return self._classifier.predict_proba(X)

    @contextmanager
    def held(self) -> Iterator[threading.Event]:
        """While inside, calls wait for the gate (opened on exit); yields an event set when a call has started."""
        self._started = threading.Event()
        self._gate = threading.Event()
        try:
            yield self._started
        finally:
            self._gate.set()
            self._gate = None


def _rejects(schema: type[BaseModel], payload: Any, what: str) -> None:
    """schema.model_validate(payload) must raise ValidationError."""
    try:
        schema.model_validate(payload)
    except ValidationError:
        return
    raise AssertionError(f"{what} が通ってしまいました: {payload!r}")


def _accepts(schema: type[BaseModel], features: list[float], what: str) -> None:
    """schema.model_validate({"features": features}) must succeed and keep the features as sent."""
    try:
        model = schema.model_validate({"features": features})
    except ValidationError as exc:
        raise AssertionError(
            f"{what}（{features}）が拒否されました。範囲は 0 以上 30 以下で、0 とちょうど 30 も受け付けます: "
            f"{exc.errors()[0]['msg']}"
        ) from None
    assert model.features is not None and list(model.features) == features, (
        f"features をそのまま返してください（return features を忘れていませんか？）: {model.features!r}"
    )


def _value_error_at(schema: type[BaseModel], features: list[float], index: int) -> None:
    """features must be rejected by a ValueError of the field validator whose message names features[index]."""
    try:
        schema.model_validate({"features": features})
    except ValidationError as exc:
        errors = exc.errors()
        assert any(e["type"] == "value_error" for e in errors), (
            f"30 cm を超える値は @field_validator の中の ValueError（type が value_error）で拒否してください: {errors}"
        )
        assert any(f"features[{index}]" in e["msg"] for e in errors), (
            f"エラーメッセージに位置 features[{index}] を書いてください（0 から数えます）: {errors[0]['msg']!r}"
        )
    else:
        raise AssertionError(f"{features[index]} cm（30 cm 超え、features[{index}]）が通ってしまいました: {features}")


def _json_422(response: requests.Response, what: str) -> list[dict[str, Any]]:
    """The response is a 422 with FastAPI's {"detail": [...]} body in strict JSON."""
    assert response.status_code == 422, (
        f"{what} に 422 を期待しましたが {response.status_code} でした: {response.text[:200]}"
    )
    body = response.json()
    assert isinstance(body.get("detail"), list) and body["detail"], (
        f"{what} の本文に detail のリストがありません: {body}"
    )
    return body["detail"]


def _echo_app(schema: type[BaseModel]) -> FastAPI:
    """An app whose POST /check validates its body with the learner's schema."""
    app = FastAPI()
    app.add_exception_handler(RequestValidationError, validation_exception_handler)

    def echo(request: Any) -> dict[str, Any]:
        return {"features": list(request.features)}

    echo.__annotations__ = {"request": schema, "return": dict}  # the learner's class, not a string annotation
    app.post("/check")(echo)
    return app


def check_plausible_schema(schema: type[BaseModel]) -> None:
    """Exercise 1: the strict 4-number rules plus a field_validator: 0 <= x <= 30 cm, both ends accepted."""
    assert isinstance(schema, type) and issubclass(schema, BaseModel), (
        "Pydantic の BaseModel を継承したクラスを渡してください"
    )
    _accepts(schema, GOOD, "正しい入力")
    _accepts(schema, [30, 30.0, 30, 30.0], "ちょうど 30 cm")
    _accepts(schema, [0, 0.0, 5.1, 0.2], "0 cm")
    _value_error_at(schema, [5.1, 35.0, 1.4, 0.2], 1)
    _value_error_at(schema, [5.1, 3.5, 1.4, 31.0], 3)
    _value_error_at(schema, [30.5, 3.5, 1.4, 0.2], 0)
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

    with serve(_echo_app(schema)) as server, requests.Session() as session:
        url = server.url + "/check"
        good = session.post(url, json={"features": GOOD}, timeout=10)
        assert good.status_code == 200, "FastAPI の本文として正しい入力が通りません"
        detail = _json_422(session.post(url, json={"features": [5.1, 3.5, 31.0, 0.2]}, timeout=10), "31 cm を含む本文")
        assert detail[0]["loc"][:2] == ["body", "features"], (
            f"エラーの loc が features を指していません: {detail[0]['loc']}"
        )
        nan_body = '{"features": [NaN, 3.5, 1.4, 0.2]}'
        _json_422(session.post(url, data=nan_body, headers=JSON_HEADERS, timeout=10), "NaN を含む本文")


def _check_predictions(predictions: Any, rows: np.ndarray, expected: np.ndarray) -> None:
    """One PredictionResponse per row, in the rows' order, matching the network's probabilities."""
    assert isinstance(predictions, list) and len(predictions) == len(rows), (
        f"predictions は {len(rows)} 件のリストにしてください: {str(predictions)[:200]}"
    )
    for i, (item, probs) in enumerate(zip(predictions, expected, strict=True)):
        PredictionResponse.model_validate(item)
        class_id = int(np.argmax(probs))
        assert item["prediction"] == class_id and item["class_name"] == IRIS_CLASSES[class_id], (
            f"{i} 件目の予測が違います（行と同じ順番で返していますか？）: {item}"
        )
        assert abs(item["confidence"] - float(probs[class_id])) < 1e-5, f"{i} 件目の confidence が違います: {item}"


def check_limited_batch(create_batch_app: Callable[..., FastAPI]) -> None:
    """Exercise 2: POST /predict/batch {"instances": [...]} → {"predictions": [...]}; > max_rows → 413, bad → 422."""
    model = HeavyModel(work_s=0.0)
    app = create_batch_app(model, max_rows=5)
    rows = iris_rows(5, seed=11)
    expected = TorchIrisClassifier(_net()).predict_proba(rows)
    with serve(app) as server, requests.Session() as session:
        url = server.url + "/predict/batch"
        good = session.post(url, json={"instances": rows.tolist()}, timeout=10)
        assert good.status_code == 200, (
            f"5 行（上限ちょうど）のバッチに {good.status_code} が返りました: {good.text[:200]}"
        )
        _check_predictions(good.json().get("predictions") if isinstance(good.json(), dict) else None, rows, expected)
        rows_before = model.rows
        too_many = session.post(url, json={"instances": [GOOD] * 6}, timeout=10)
        assert too_many.status_code == 413, (
            f"6 行（上限 5 行を超える）には 413 を返してください（{too_many.status_code} でした）"
        )
        assert model.rows == rows_before, (
            "上限を超えたバッチは、推論する前に 413 で断ってください（モデルが呼ばれました）"
        )
        message = str(too_many.json().get("detail"))
        assert "5" in message, f"413 のメッセージには上限（5 行）を書いてください: {message!r}"
        _json_422(session.post(url, json={"instances": []}, timeout=10), "空のバッチ")
        nan_row = '{"instances": [[5.1, 3.5, 1.4, 0.2], [1, NaN, 1, 1]]}'
        detail = _json_422(session.post(url, data=nan_row, headers=JSON_HEADERS, timeout=10), "NaN を含む行")
        assert detail[0]["loc"][:3] == ["body", "instances", 1], (
            f"だめな行の位置（instances の 1 番）が loc にありません: {detail[0]['loc']}"
        )
        _json_422(session.post(url, json={"instances": [[5.1, "x", 1.4, 0.2]]}, timeout=10), "文字列を含む行")
        after = session.post(url, json={"instances": [GOOD]}, timeout=10)
        assert after.status_code == 200, "エラーの後、正しいバッチが成功しませんでした"


def _check_fixed_app(create_fixed_app: Callable[[Any], FastAPI]) -> None:
    """The learner's app answers /predict with the heavy model, off the event loop, and /health during an inference."""
    model = HeavyModel()
    rows = iris_rows(5, seed=11)[[0, 2, 3]]  # setosa, virginica, versicolor
    expected = TorchIrisClassifier(_net()).predict_proba(rows)
    with serve(create_fixed_app(model)) as server, requests.Session() as session:
        assert session.get(server.url + "/health", timeout=10).status_code == 200, "GET /health が 200 を返しません"
        answers = []
        for row in rows.tolist():
            response = session.post(server.url + "/predict", json={"features": row}, timeout=30)
            assert response.status_code == 200, (
                f"POST /predict が {response.status_code} を返しました: {response.text[:200]}"
            )
            answers.append(response.json())
        assert model.calls >= len(rows), (
            f"/predict を {len(rows)} 回送りましたが、モデルが呼ばれたのは {model.calls} 回でした。"
            "重い推論を消したり待ち（asyncio.sleep）で置き換えたりせず、モデルを呼んだまま直してください"
        )
        _check_predictions(answers, rows, expected)
        assert model.calls_on_event_loop == 0, (
            f"モデルが {model.calls_on_event_loop} 回、イベントループのスレッドで呼ばれました"
            "（async def の中で直接呼んでいます）。エンドポイントを def にするか、await run_in_threadpool(...) に"
            "渡してください"
        )
        _check_health_during_inference(server.url, model)


def _check_health_during_inference(url: str, model: HeavyModel) -> None:
    """Hold one inference mid-way and ask /health: a free event loop answers it before the inference ends."""
    with ThreadPoolExecutor(1) as pool, model.held() as started:  # held() exits first: the gate opens, then we join
        pending = pool.submit(requests.post, url + "/predict", json={"features": GOOD}, timeout=HOLD_LIMIT_S + 30)
        assert started.wait(HOLD_LIMIT_S), "POST /predict がモデルを呼びませんでした"
        try:
            health = requests.get(url + "/health", timeout=HEALTH_WAIT_S)
        except requests.Timeout:
            raise AssertionError(
                f"推論の途中に送った GET /health が {HEALTH_WAIT_S:.0f} 秒たっても答えませんでした: 推論の間、"
                "イベントループが止まっています（async def の中で結果を待つ .result() や time.sleep などを"
                "していませんか？）"
            ) from None
        assert health.status_code == 200, f"推論の途中の GET /health が {health.status_code} を返しました"
    assert pending.result().status_code == 200, "推論を待たせた /predict が 200 を返しませんでした"


class _ProbeRecord:
    """What the p99 probe's server saw: /health calls, /predict calls in flight at each, and the shutdown."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.health_calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.in_flight_at_health: list[int] = []
        self.shut_down = False


def _probe_app(record: _ProbeRecord) -> FastAPI:
    """A server with known latencies: every PROBE_SLOW_EVERY-th /health waits PROBE_SLOW_S; /predict is a real model."""
    classifier = HeavyModel(work_s=0.05)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        yield
        record.shut_down = True

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health() -> dict[str, str]:
        with record.lock:
            record.health_calls += 1
            slow = record.health_calls % PROBE_SLOW_EVERY == 0
            record.in_flight_at_health.append(record.in_flight)
        if slow:
            await asyncio.sleep(PROBE_SLOW_S)  # does not block the loop: only this answer is late
        return {"status": "healthy"}

    @app.post("/predict", response_model=PredictionResponse)
    def predict(request: IrisFeatures) -> PredictionResponse:
        with record.lock:
            record.in_flight += 1
            record.max_in_flight = max(record.max_in_flight, record.in_flight)
        try:
            return predict_rows(classifier, [request.features])[0]
        finally:
            with record.lock:
                record.in_flight -= 1

    return app


def _check_p99_helper(health_p99_under_load: Callable[[FastAPI], float]) -> None:
    """The learner's helper, run on the probe: it must load /predict, time /health ≥ 20 times, return p99 in ms."""
    record = _ProbeRecord()
    value = health_p99_under_load(_probe_app(record))
    assert isinstance(value, (int, float, np.floating)) and math.isfinite(value), (
        f"p99 はミリ秒の数（float）で返してください: {value!r}"
    )
    assert record.health_calls >= PROBE_MIN_HEALTH, (
        f"/health は {PROBE_MIN_HEALTH} 回以上測ってください（{record.health_calls} 回でした）"
    )
    assert record.shut_down, "測り終わったらサーバーを止めてください（with serve(app) as server: の中で測ります）"
    probes = len(record.in_flight_at_health)
    loaded = sum(count > 0 for count in record.in_flight_at_health)
    assert loaded * 2 >= probes, (
        f"/health {probes} 回のうち、/predict の処理中に届いたのは {loaded} 回だけでした。"
        "クライアントに /predict を送り続けさせながら /health を測ってください"
    )
    assert record.max_in_flight >= 2, (
        "/predict が同時に 2 件以上届きませんでした。4 つのクライアントから同時に送ってください"
    )
    slow_ms = PROBE_SLOW_S * 1000
    assert value >= 0.75 * slow_ms, (
        f"返した値 {value:.1f} は p99（ms）にしては小さすぎます。このチェックのサーバーは /health の "
        f"{PROBE_SLOW_EVERY} 回に 1 回を {slow_ms:.0f} ms 遅らせるので、p99 はそれ以上になるはずです。"
        "中央値（p50）や平均ではなく 99 パーセンタイルを、秒ではなくミリ秒で返していますか？"
    )
    assert value <= 3.5 * slow_ms, (
        f"返した値 {value:.1f} は p99（ms）にしては大きすぎます（一番遅い 1 回でも {slow_ms:.0f} ms 程度です）。"
        "合計ではなく 99 パーセンタイルを返していますか？"
    )


def check_fixed_endpoint(
    create_fixed_app: Callable[[Any], FastAPI], health_p99_under_load: Callable[[FastAPI], float]
) -> None:
    """Exercise 3: /predict still calls the heavy model but off the event loop; the helper measures p99 under load."""
    _check_fixed_app(create_fixed_app)
    _check_p99_helper(health_p99_under_load)
