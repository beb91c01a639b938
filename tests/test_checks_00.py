"""The notebook-00 exercise checks accept the solutions and reject the mistakes a learner is likely to make."""

import pytest
import requests
from fastapi import FastAPI
from flask import Flask, request

from course_lib.exercises import checks_00


def not_implemented(*args, **kwargs):
    raise NotImplementedError()


@pytest.mark.parametrize("check", [checks_00.check_echo_app, checks_00.check_add_app, checks_00.check_health_probe])
def test_an_unfinished_exercise_is_reported_as_not_implemented(check):
    with pytest.raises(NotImplementedError):
        check(not_implemented)


# Exercise 1: POST /echo


def echo_app(method: str = "post", answer=lambda body: {"echo": body}) -> Flask:
    """The solution's echo app; method and answer let a test make a learner's mistake."""
    app = Flask("echo")

    @app.route("/echo", methods=[method.upper()])
    def echo():
        return answer(request.get_json(silent=True))

    return app


def test_echo_check_accepts_the_solution():
    checks_00.check_echo_app(echo_app)


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        (lambda: echo_app(method="get"), "ステータスが 405 です.*@app.post"),
        (lambda: echo_app(answer=lambda body: body), "応答が"),
        (lambda: echo_app(answer=lambda body: {"echo": request.get_data(as_text=True)}), "応答が"),
        # dict(body) works for objects only: the array body crashes the app
        (lambda: echo_app(answer=lambda body: {"echo": dict(body)}), "ステータスが 500 です.*トレースバック"),
    ],
    ids=["GET instead of POST", "body not wrapped", "raw text echoed", "arrays fail"],
)
def test_echo_check_rejects_a_mistake(mistake, message):
    with pytest.raises(AssertionError, match=message):
        checks_00.check_echo_app(mistake)


# Exercise 2: GET /add


def add_app(kind=float) -> FastAPI:
    """The solution's add app with a chosen type hint for a and b (None: no hint, converted by hand)."""
    app = FastAPI()
    if kind is None:

        @app.get("/add")
        def add_untyped(a, b):
            return {"sum": float(a) + float(b)}

    else:

        @app.get("/add")
        def add(a: kind, b: kind):  # type: ignore[valid-type]
            return {"sum": a + b}

    return app


def test_add_check_accepts_the_solution():
    checks_00.check_add_app(add_app)


@pytest.mark.parametrize(
    ("kind", "message"),
    [(int, "ステータスが 422"), (str, "float"), (None, "422 を期待")],
    ids=["int hints refuse 2.5", "str hints concatenate", "no hints: abc is a 500"],
)
def test_add_check_rejects_a_mistake(kind, message):
    with pytest.raises(AssertionError, match=message):
        checks_00.check_add_app(lambda: add_app(kind))


# Exercise 3: the health probe


def probe(path="/health", timeout=2.0, healthy=lambda status: status == 200, catch=requests.RequestException):
    """The solution's probe; each argument lets a test make a learner's mistake (timeout=None waits forever)."""

    def is_healthy(url: str) -> bool:
        try:
            return healthy(requests.get(url + path, timeout=timeout).status_code)
        except catch:
            return False

    return is_healthy


def test_health_check_accepts_the_solution():
    checks_00.check_health_probe(probe())


def no_try(url):
    return requests.get(url + "/health", timeout=2).status_code == 200


def the_response(url):
    try:
        return requests.get(url + "/health", timeout=2)
    except requests.RequestException:
        return False


@pytest.mark.parametrize(
    ("wrong", "message"),
    [
        (probe(healthy=lambda status: True), "404（そのパスがない）のサーバーで True"),
        (probe(path="/healthz"), "200 と答えるサーバーで False"),
        (probe(healthy=lambda status: status < 500), "404（そのパスがない）のサーバーで True"),
        (probe(healthy=lambda status: status != 404), "500（サーバー内部のエラー）のサーバーで True"),
        (no_try, "動いていないポートで例外 ConnectionError"),
        (probe(catch=requests.ConnectionError), "応答しないサーバーで例外 ReadTimeout"),
        (the_response, "True か False（bool）を返してください"),
    ],
    ids=["any reply", "wrong path", "below 500", "not 404", "no try", "connection errors only", "the response"],
)
def test_health_check_rejects_a_mistake(wrong, message):
    with pytest.raises(AssertionError, match=message):
        checks_00.check_health_probe(wrong)


@pytest.mark.parametrize("timeout", [None, 30.0], ids=["no timeout", "long timeout"])
def test_health_check_rejects_a_probe_that_waits_too_long_and_ends_itself(timeout, monkeypatch):
    monkeypatch.setattr(checks_00, "PROBE_LIMIT_S", 3.0)  # the probe never returns in time: no need to wait 10 s
    with pytest.raises(AssertionError, match="3 秒たっても返りませんでした"):
        checks_00.check_health_probe(probe(timeout=timeout))
