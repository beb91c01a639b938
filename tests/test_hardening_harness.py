"""Tests of the hardening tests: each check catches a deliberately broken server or answer."""

from __future__ import annotations

import itertools
import threading

import pytest
import requests
from fastapi import FastAPI
from flask import Flask, abort, request
from fuzz import fuzz_openapi
from hardening import (
    assert_lifecycle_clean,
    differences,
    error_body_problem,
    leaks,
    oversized_answers,
    reference_answers,
    same_answers_under_load,
    start_stop_cycles,
)
from pydantic import BaseModel
from schemathesis.core.failures import FailureGroup
from soak import Call, SoakReport, assert_clean, soak

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
            return 'Traceback (most recent call last):\n  File "/srv/app.py", line 3', 500
        if request.get_json(silent=True) is None:
            abort(400)
        return {"ok": True}

    return app


def test_soak_reports_server_errors_and_accepted_bad_input():
    mix = [
        Call("good", "POST", "/predict", True, {"json": {"x": 1}}),
        Call("should be refused", "POST", "/predict", False, {"json": {"x": -1}}),
    ]
    with serve(flaky_app()) as server:
        report = soak(server.url, mix, clients=4, per_client=50, warmup=0, check=error_body_problem)
    with pytest.raises(AssertionError, match=r"500 Traceback \(most recent call last\)"):
        assert_clean(report, expected=200)
    assert report.requests == 200 and len(report.server_errors) == 4  # one in 50
    assert report.accepted_bad and all(
        entry.startswith("should be refused: accepted with 200") for entry in report.accepted_bad
    )
    assert not report.failed_good  # the good request never failed: its 500s are server errors
    assert any(
        "500 answered with 'text/html; charset=utf-8', not JSON" in problem for problem in report.answer_problems
    )


@pytest.mark.parametrize(
    ("anomaly", "message"),
    [
        ({"requests": 9}, "9 of 10 requests sent"),
        ({"client_errors": ["good: ConnectionError: reset"]}, "ConnectionError: reset"),
        ({"server_errors": ["good: 500 boom"]}, "500 boom"),
        ({"failed_good": ["good: 404 gone"]}, "404 gone"),
        ({"accepted_bad": ["bad: accepted with 200"]}, "accepted with 200"),
        ({"answer_problems": ["good: differs from the same request sent alone"]}, "differs from the same request"),
        ({"rss_end_mb": 1000.0}, r"RSS 100 → 1000 MB \(\+900.0 MB\)"),
    ],
    ids=["count", "client error", "server error", "failed good", "accepted bad", "answer problem", "memory growth"],
)
def test_assert_clean_fails_for_each_kind_of_anomaly_alone(anomaly, message):
    clean = {"requests": 10, "rss_start_mb": 100.0, "rss_end_mb": 101.0}
    assert_clean(SoakReport(**clean), expected=10)
    with pytest.raises(AssertionError, match=message):
        assert_clean(SoakReport(**{**clean, **anomaly}), expected=10)


def mixing_app() -> Flask:
    """Echoes {"x": …, "double": 2x} but, one request in 20, answers the previous request's x (a shared variable)."""
    app = Flask("mixing")
    counter = itertools.count()
    last = {"x": 0}

    @app.post("/predict")
    def predict():
        x, n = request.get_json()["x"], next(counter)
        answer = last["x"] if n % 20 == 19 else x
        last["x"] = x
        return {"x": answer, "double": 2 * answer, "took_ms": n}  # took_ms varies, as a timing does

    return app


def test_the_soak_check_catches_answers_mixed_up_between_clients():
    mix = [Call(f"x={x}", "POST", "/predict", True, {"json": {"x": x}}) for x in (1, 2, 3)]
    with serve(mixing_app()) as server:
        reference = reference_answers(server.url, mix)
        report = soak(
            server.url,
            mix,
            clients=4,
            per_client=50,
            warmup=0,
            check=same_answers_under_load(reference, volatile=["took_ms"]),
        )
    assert {name: answer["x"] for name, answer in reference.items()} == {"x=1": 1, "x=2": 2, "x=3": 3}
    assert report.answer_problems and not report.server_errors and not report.failed_good
    problems = [entry.split(": ", 1)[1] for entry in report.answer_problems]
    assert all(
        problem.startswith("differs from the same request sent alone: ") and "answer.x: " in problem
        for problem in problems
    ), problems
    with pytest.raises(AssertionError, match="differs from the same request sent alone"):
        assert_clean(report, expected=200)


def test_differences_name_the_place_and_allow_only_tiny_numeric_noise():
    expected = {"top": [{"class": "3", "p": 0.5}], "n": 1}

    def with_(**changes) -> dict:
        return {**expected, **changes}

    assert differences(with_(top=[{"class": "3", "p": 0.500001}]), expected) == []
    assert differences(with_(top=[{"class": "8", "p": 0.5}]), expected) == ["answer.top[0].class: '8' instead of '3'"]
    assert differences(with_(top=[{"class": "3", "p": 0.51}]), expected) == ["answer.top[0].p: 0.51 instead of 0.5"]
    assert differences(with_(top=[]), expected) == ["answer.top: 0 items instead of 1"]
    assert differences({"top": expected["top"]}, expected) == ["answer: keys ['top'] instead of ['n', 'top']"]
    assert differences(with_(n=True), expected) == ["answer.n: True instead of 1"]


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
        with pytest.raises(AssertionError, match="'fds_after'"):
            assert_lifecycle_clean(counts, cycles=2)
    finally:
        for sock in LeakyServer.leaked:
            sock.close()


CLEAN_CYCLES = {
    "threads_before": 5,
    "threads_after": 5,
    "fds_before": 20,
    "fds_after": 20,
    "ports_still_listening": 0,
    "in_flight_requests": 2,
}


@pytest.mark.parametrize(
    "leak",
    [{"threads_after": 6}, {"fds_after": 21}, {"ports_still_listening": 1}, {"in_flight_requests": 1}],
    ids=lambda leak: next(iter(leak)),
)
def test_assert_lifecycle_clean_fails_for_each_kind_of_leak_alone(leak):
    assert_lifecycle_clean(CLEAN_CYCLES, cycles=4)
    with pytest.raises(AssertionError, match=f"'{next(iter(leak))}': {next(iter(leak.values()))}"):
        assert_lifecycle_clean({**CLEAN_CYCLES, **leak}, cycles=4)
