"""Tests of the hardening tests: each check catches a deliberately broken server or answer."""

from __future__ import annotations

import itertools
import threading

import pytest
import requests
from fastapi import FastAPI
from flask import Flask, abort, request
from fuzz import fuzz_openapi
from hardening import assert_lifecycle_clean, error_body_problem, leaks, oversized_answers, start_stop_cycles
from pydantic import BaseModel
from schemathesis.core.failures import FailureGroup
from soak import Call, assert_clean, soak

from course_lib.servers import serve


class Features(BaseModel):
    features: list[float]


class Answer(BaseModel):
    ratio: float


def divide_app() -> FastAPI:
    """A FastAPI app with a bug the fuzzer must find: 0 as the first feature raises ZeroDivisionError → 500."""
    app = FastAPI()

    @app.post("/predict", response_model=Answer)
    def predict(body: Features) -> Answer:
        return Answer(ratio=1 / body.features[0] if body.features else 0.0)

    return app


def wrong_shape_app() -> FastAPI:
    """A FastAPI app whose answers do not match its own OpenAPI document."""
    app = FastAPI()

    @app.post("/predict", responses={200: {"model": Answer}})
    def predict(body: Features) -> dict:
        return {"ratio": "not a number"}

    return app


@pytest.mark.parametrize("make_app", [divide_app, wrong_shape_app])
def test_the_fuzzer_catches_a_500_and_a_schema_mismatch(make_app):
    with serve(make_app()) as server, pytest.raises(FailureGroup) as caught:
        fuzz_openapi(server.url)
    found = {type(failure).__name__ for failure in caught.value.exceptions}
    assert found & {"ServerError", "JsonSchemaError"}, found


def flaky_app() -> Flask:
    """Fails one request in 50 with a 500 that shows a traceback, and accepts a negative value it should refuse."""
    app = Flask("flaky")
    counter = itertools.count()
    lock = threading.Lock()

    @app.post("/predict")
    def predict():
        with lock:
            n = next(counter)
        if n % 50 == 49:
            return "Traceback (most recent call last):\n  File \"/srv/app.py\", line 3", 500
        if request.get_json(silent=True) is None:
            abort(400)
        return {"ok": True}

    return app


def test_soak_reports_server_errors_and_accepted_bad_input():
    mix = [Call("good", "POST", "/predict", True, {"json": {"x": 1}}),
           Call("should be refused", "POST", "/predict", False, {"json": {"x": -1}})]
    with serve(flaky_app()) as server:
        report = soak(server.url, mix, clients=4, per_client=50, warmup=0, check=error_body_problem)
    with pytest.raises(AssertionError):
        assert_clean(report, expected=200)
    assert report.server_errors and report.good_rejected_bad
    assert any("not JSON" in problem for problem in report.failed_good)


def test_leaks_finds_tracebacks_and_server_paths_but_not_ordinary_messages():
    assert leaks('Traceback (most recent call last):\n  File "/srv/app.py", line 3, in predict')
    assert leaks("cannot open /home/alice/model.pkl")
    assert leaks("error in /usr/lib/python3.11/site-packages/x.py")
    assert not leaks('{"error": "the request body is too large (limit: 16384 bytes)", "code": "body_too_large"}')
    assert not leaks('{"error": "no such endpoint: GET /predict/x; try GET /health or POST /predict"}')


def test_a_route_without_a_size_limit_is_caught():
    app = Flask("unlimited", static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = 1024  # only enforced where a route reads its body

    @app.get("/health")
    def health():
        return {"status": "ok"}

    statuses = oversized_answers(app, 1024)
    assert statuses == {"GET /health": 200}  # the hardening tests require 413 here


class LeakyServer:
    """A server handle whose stop() forgets to close one listening socket."""

    leaked: list = []

    def __init__(self) -> None:
        self.inner = serve(FastAPI())

    def start(self):
        import socket

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        self.leaked.append(sock)
        self.inner.start()
        return self

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def port(self) -> int:
        return self.leaked[-1].getsockname()[1]

    def stop(self) -> None:
        self.inner.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def test_start_stop_cycles_catch_a_listening_socket_left_open():
    try:
        counts = start_stop_cycles(LeakyServer, lambda url: requests.get(url + "/openapi.json", timeout=10), cycles=2)
        assert counts["ports_still_listening"] == 2
        assert counts["fds_after"] > counts["fds_before"]
        with pytest.raises(AssertionError):
            assert_lifecycle_clean(counts, cycles=2)
    finally:
        for sock in LeakyServer.leaked:
            sock.close()
