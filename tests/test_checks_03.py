"""The notebook-03 exercise checks reject the mistakes a learner is likely to make, report unfinished answers, and
accept the committed solution (run from solutions/03 itself, so the test and the notebook cannot drift apart)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated, Any

import pytest
from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from helpers import solution_namespace
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool

from course_lib.apps.async_pitfall import health_under_load
from course_lib.apps.iris_fastapi import as_classifier, predict_rows, validation_exception_handler
from course_lib.apps.iris_schemas import BatchResponse, FeatureRow, IrisBatch, IrisFeatures, PredictionResponse
from course_lib.bench import http_latency
from course_lib.exercises import checks_03
from course_lib.servers import serve

SOLUTION_NAMES = ("PlausibleIrisFeatures", "create_batch_app", "create_fixed_app", "health_p99_under_load")


@pytest.fixture(scope="module")
def solution() -> dict[str, Any]:
    """The committed solutions' definitions."""
    return solution_namespace("03", SOLUTION_NAMES)


def not_implemented(*args, **kwargs):
    raise NotImplementedError()


def test_the_solution_passes_every_check(solution):
    checks_03.check_plausible_schema(solution["PlausibleIrisFeatures"])
    checks_03.check_limited_batch(solution["create_batch_app"])
    checks_03.check_fixed_endpoint(solution["create_fixed_app"], solution["health_p99_under_load"])


def test_unfinished_exercises_are_reported_as_not_implemented(solution):
    class Unfinished(IrisFeatures):
        @field_validator("features")
        @classmethod
        def at_most_30_cm(cls, features):
            raise NotImplementedError()

    with pytest.raises(NotImplementedError):
        checks_03.check_plausible_schema(Unfinished)
    with pytest.raises(NotImplementedError):
        checks_03.check_limited_batch(not_implemented)
    with pytest.raises(NotImplementedError):
        checks_03.check_fixed_endpoint(not_implemented, solution["health_p99_under_load"])
    with pytest.raises(NotImplementedError):
        checks_03.check_fixed_endpoint(solution["create_fixed_app"], not_implemented)


# Exercise 1: the 0 <= x <= 30 cm rule in a field_validator


def schema(rule, message: str = "features[{i}] must be at most 30 cm, got {value}", returns=True, lax=False):
    """A learner's PlausibleIrisFeatures whose validator rejects the values for which rule(value) is true."""

    class Plausible(BaseModel):
        model_config = ConfigDict(extra="forbid")
        if lax:
            features: list[float] = Field(min_length=4, max_length=4)
        else:
            features: FeatureRow

        @field_validator("features")
        @classmethod
        def at_most_30_cm(cls, features):
            for i, value in enumerate(features):
                if rule(value):
                    raise ValueError(message.format(i=i, value=value))
            return features if returns else None

    return Plausible


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (IrisFeatures, "35.0 cm"),  # no rule at all
        (schema(lambda v: v >= 30), "ちょうど 30 cm（.*が拒否されました"),  # off by one at the top
        (schema(lambda v: not 0 < v <= 30), "^0 cm（.*が拒否されました"),  # 0 rejected: not the course's rule
        (schema(lambda v: int(v) > 30), "30.5 cm"),  # 30.5 truncated to 30
        (schema(lambda v: v > 30, message="too large"), r"位置 features\[1\]"),  # no position
        (schema(lambda v: v > 30, message="features[{value}] must be at most 30 cm"), r"位置 features\[1\]"),
        (schema(lambda v: v > 30, returns=False), "return features"),  # forgets to return
        (schema(lambda v: v > 30, lax=True), "NaN"),  # the source's lax list[float]
    ],
    ids=[
        "no-rule",
        "rejects-30",
        "rejects-0",
        "int-truncation",
        "no-position",
        "wrong-position",
        "no-return",
        "lax-type",
    ],
)
def test_schema_check_rejects(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks_03.check_plausible_schema(wrong)


def test_schema_check_rejects_a_validator_that_skips_the_last_value():
    class FirstThree(BaseModel):
        model_config = ConfigDict(extra="forbid")
        features: FeatureRow

        @field_validator("features")
        @classmethod
        def at_most_30_cm(cls, features):
            for i in range(3):
                if features[i] > 30:
                    raise ValueError(f"features[{i}] must be at most 30 cm")
            return features

    with pytest.raises(AssertionError, match=r"31.0 cm（30 cm 超え、features\[3\]）が通ってしまいました"):
        checks_03.check_plausible_schema(FirstThree)


def test_schema_check_rejects_a_field_bound_instead_of_a_validator():
    class LeBound(BaseModel):  # le=30 on the type: a 422, but not the field_validator the exercise is about
        model_config = ConfigDict(extra="forbid")
        features: Annotated[
            list[Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=30)]],
            Field(min_length=4, max_length=4),
        ]

    with pytest.raises(AssertionError, match="value_error"):
        checks_03.check_plausible_schema(LeBound)


# Exercise 2: the row limit


def batch_app(
    limit_check=lambda n, max_rows: n > max_rows,
    status: int = 413,
    detail: str = "at most {max_rows} instances, got {n}",
    handler: bool = True,
    late: bool = False,
    reverse: bool = False,
    wrap: bool = True,
):
    """A learner's create_batch_app with one knob per likely mistake."""

    def create_batch_app(model: Any, max_rows: int = 10) -> FastAPI:
        classifier = as_classifier(model)
        app = FastAPI()
        if handler:
            app.add_exception_handler(RequestValidationError, validation_exception_handler)

        @app.post("/predict/batch")
        def predict_batch(request: IrisBatch):
            n = len(request.instances)
            answers = predict_rows(classifier, request.instances) if late else None
            if limit_check(n, max_rows):
                raise HTTPException(status_code=status, detail=detail.format(max_rows=max_rows, n=n))
            answers = answers or predict_rows(classifier, request.instances)
            if reverse:
                answers = answers[::-1]
            return BatchResponse(predictions=answers) if wrap else answers

        return app

    return create_batch_app


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (batch_app(limit_check=lambda n, max_rows: False), "413"),  # no limit
        (batch_app(limit_check=lambda n, max_rows: n >= max_rows), "上限ちょうど"),  # off by one
        (batch_app(limit_check=lambda n, max_rows: n > 10), "413"),  # ignores max_rows
        (batch_app(status=422), "413"),  # wrong status
        (batch_app(detail="too many rows: {n}"), "上限（5 行）"),  # message without the limit
        (batch_app(late=True), "推論する前に"),  # infers, then refuses
        (batch_app(handler=False), "NaN を含む行 に 422 を期待しましたが 500"),  # no JSON-safe handler
        (batch_app(reverse=True), "0 件目の予測が違います"),  # order lost
        (batch_app(wrap=False), "predictions は 5 件のリスト"),  # a bare list
    ],
    ids=[
        "no-limit",
        "off-by-one",
        "ignores-max-rows",
        "422",
        "no-limit-in-message",
        "infers-first",
        "no-handler",
        "reversed",
        "bare-list",
    ],
)
def test_batch_check_rejects(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks_03.check_limited_batch(wrong)


# Exercise 3 (a): the fixed endpoint


def fixed_app(predict_style: str):
    """A learner's create_fixed_app whose /predict is written in the given (mostly wrong) style."""

    def create_fixed_app(model: Any) -> FastAPI:
        classifier = as_classifier(model)
        app = FastAPI()

        @app.get("/health")
        async def health() -> dict[str, str]:
            return {"status": "healthy"}

        if predict_style == "blocking":  # the source's mistake, unchanged

            @app.post("/predict", response_model=PredictionResponse)
            async def predict(request: IrisFeatures) -> PredictionResponse:
                return predict_rows(classifier, [request.features])[0]

        elif predict_style == "asyncio-sleep-then-model":  # an await in front does not free the loop

            @app.post("/predict", response_model=PredictionResponse)
            async def predict(request: IrisFeatures) -> PredictionResponse:
                await asyncio.sleep(0.05)
                return predict_rows(classifier, [request.features])[0]

        elif predict_style == "asyncio-sleep-instead-of-model":  # the work replaced by a sleep, a made-up answer

            @app.post("/predict", response_model=PredictionResponse)
            async def predict(request: IrisFeatures) -> PredictionResponse:
                await asyncio.sleep(0.05)
                return PredictionResponse(prediction=0, class_name="setosa", confidence=1.0)

        elif predict_style == "executor-result":  # the model runs in a thread, but the loop waits for it

            @app.post("/predict", response_model=PredictionResponse)
            async def predict(request: IrisFeatures) -> PredictionResponse:
                with ThreadPoolExecutor(1) as pool:
                    return pool.submit(predict_rows, classifier, [request.features]).result()[0]

        elif predict_style == "def":

            @app.post("/predict", response_model=PredictionResponse)
            def predict(request: IrisFeatures) -> PredictionResponse:
                return predict_rows(classifier, [request.features])[0]

        else:  # "threadpool"

            @app.post("/predict", response_model=PredictionResponse)
            async def predict(request: IrisFeatures) -> PredictionResponse:
                return (await run_in_threadpool(predict_rows, classifier, [request.features]))[0]

        return app

    return create_fixed_app


@pytest.mark.parametrize(
    ("style", "message"),
    [
        ("blocking", "イベントループのスレッドで呼ばれました"),
        ("asyncio-sleep-then-model", "イベントループのスレッドで呼ばれました"),
        ("asyncio-sleep-instead-of-model", "モデルが呼ばれたのは 0 回"),
        ("executor-result", "イベントループが止まっています"),
    ],
)
def test_fixed_endpoint_check_rejects(solution, style, message):
    with pytest.raises(AssertionError, match=message):
        checks_03.check_fixed_endpoint(fixed_app(style), solution["health_p99_under_load"])


@pytest.mark.parametrize("style", ["def", "threadpool"])
def test_fixed_endpoint_check_accepts_both_right_styles(solution, style):
    checks_03.check_fixed_endpoint(fixed_app(style), solution["health_p99_under_load"])


# Exercise 3 (b): the p99 helper


def measured(statistic, n: int = 20, clients: int = 4):
    """A learner's health_p99_under_load that returns statistic(stats) of health_under_load."""

    def health_p99_under_load(app: FastAPI) -> float:
        with serve(app) as server:
            return statistic(health_under_load(server.url, n=n, clients=clients))

    return health_p99_under_load


def without_load(app: FastAPI) -> float:
    """/health timed 20 times with nobody calling /predict."""
    with serve(app) as server:
        return http_latency("GET", server.url + "/health", n=20).p99


def leaves_the_server_running(app: FastAPI) -> float:
    """Measures correctly but never stops the server."""
    server = serve(app)
    leaks.append(server)
    return health_under_load(server.url, n=20, clients=4).p99


leaks: list[Any] = []


@pytest.mark.parametrize(
    ("helper", "message"),
    [
        (measured(lambda stats: stats.p50), "小さすぎます"),
        (measured(lambda stats: stats.summary()["mean_ms"]), "小さすぎます"),
        (measured(lambda stats: stats.p99 / 1000), "小さすぎます"),  # seconds
        (measured(lambda stats: float(stats.samples_ms.sum())), "大きすぎます"),  # a total
        (measured(lambda stats: stats.p99, n=5), "20 回以上"),
        (measured(lambda stats: stats.p99, clients=1), "同時に 2 件以上"),
        (without_load, "/predict の処理中に届いたのは"),
        (lambda app: 1.0, "20 回以上"),  # a made-up number
        (measured(lambda stats: str(stats.p99)), "ミリ秒の数"),
        (leaves_the_server_running, "サーバーを止めて"),
    ],
    ids=[
        "p50",
        "mean",
        "seconds",
        "sum",
        "too-few",
        "one-client",
        "no-load",
        "made-up",
        "string",
        "server-left-running",
    ],
)
def test_p99_helper_check_rejects(solution, helper, message):
    try:
        with pytest.raises(AssertionError, match=message):
            checks_03.check_fixed_endpoint(solution["create_fixed_app"], helper)
    finally:
        while leaks:
            leaks.pop().stop()
