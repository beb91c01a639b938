"""The image API with dynamic batching, over real HTTP: answers as without batching, bad images kept out of batches,
batches that form, a full queue (503 + Retry-After), disconnected clients dropped, a stop that drains."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import requests
import torch
from test_image_api import BAD_INPUTS, upload

from course_lib.apps.image_api import (
    ENVIRONMENT,
    batcher_of,
    create_app,
    environment_for,
    settings_from_environment,
)
from course_lib.servers import serve
from course_lib.vision import encode_base64, sample_images
from course_lib.vision.backends import TorchBackend

SAMPLES = sample_images()
CLIENTS = 8
GOOD = {
    "digit 0 (PNG)": ("/predict", {"files": {"file": ("d0.png", SAMPLES["digit_0.png"], "image/png")}}),
    "digit 1 (PNG)": ("/predict", {"files": {"file": ("d1.png", SAMPLES["digit_1.png"], "image/png")}}),
    "digit 2 (Base64)": ("/predict/base64", {"json": {"image": encode_base64(SAMPLES["digit_2.png"], "png")}}),
    "china (JPEG)": ("/predict", {"files": {"file": ("china.jpg", SAMPLES["china.jpg"], "image/jpeg")}}),
    "flower (JPEG)": ("/predict", {"files": {"file": ("flower.jpg", SAMPLES["flower.jpg"], "image/jpeg")}}),
}
BAD = [
    "empty file",
    "text file",
    "truncated png",
    "truncated jpeg",
    "decompression bomb",
    "file over 10 MiB",
    "wrong field name",
    "invalid base64 characters",
    "base64 of text",
    "image is a number",
]


class Watched:
    """A real backend behind a gate that records the size of every batch it runs (the gate is open by default)."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.name = inner, inner.name
        self.sizes: list[int] = []
        self.gate, self.entered = threading.Event(), threading.Event()
        self.gate.set()

    def probabilities(self, batch: torch.Tensor) -> np.ndarray:
        """Record the batch size, wait for the gate, then run the real backend."""
        self.sizes.append(len(batch))
        self.entered.set()
        if not self.gate.wait(timeout=60):
            raise RuntimeError("gate never opened")
        return self.inner.probabilities(batch)

    def hold(self) -> None:
        """Close the gate: the next batch waits inside the backend until release()."""
        self.entered.clear()
        self.gate.clear()

    def release(self) -> None:
        """Open the gate."""
        self.gate.set()


@pytest.fixture(scope="module")
def plain_url(classifier):
    """The API without batching: the reference answers."""
    with serve(create_app(classifier, backend="torch")) as server:
        yield server.url


@pytest.fixture
def watched(classifier) -> Watched:
    """A fresh gated, recording torch backend; its first recorded size is create_app's warm-up call."""
    return Watched(TorchBackend(classifier))


def post(url: str, path: str, kwargs: dict[str, Any]) -> requests.Response:
    return requests.post(url + path, timeout=60, **kwargs)


def batching(url: str) -> dict[str, Any]:
    """GET /health's batching counters."""
    return requests.get(url + "/health", timeout=10).json()["batching"]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll until condition() holds; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


def assert_same_answer(got: dict[str, Any], expected: dict[str, Any]) -> None:
    """The same classification as the reference: top class, model, backend, and probabilities within 1e-4."""
    assert (got["top_class"], got["model"], got["backend"]) == (
        expected["top_class"],
        expected["model"],
        expected["backend"],
    )
    assert got["confidence"] == pytest.approx(expected["confidence"], abs=1e-4)
    theirs = {entry["class"]: entry["probability"] for entry in expected["top_5"]}
    common = [entry for entry in got["top_5"] if entry["class"] in theirs]
    assert len(common) >= 4, (got, expected)  # only near-equal tiny probabilities may swap at the tail
    assert all(entry["probability"] == pytest.approx(theirs[entry["class"]], abs=1e-4) for entry in common)


@pytest.fixture(scope="module")
def reference(plain_url) -> dict[str, dict[str, Any]]:
    """Each good request's answer from the API without batching."""
    return {name: post(plain_url, *GOOD[name]).json() for name in GOOD}


def test_concurrent_good_and_bad_requests_get_the_unbatched_answers_or_their_own_4xx(classifier, watched, reference):
    calls = [(name, True) for name in GOOD] * 3 + [(name, False) for name in BAD]
    with serve(create_app(classifier, backend=watched, max_batch=8, max_wait_ms=10)) as server:

        def client(seed: int) -> list[tuple[str, bool, requests.Response]]:
            order = random.Random(seed).sample(calls, len(calls))
            kwargs = {name: GOOD[name] if good else BAD_INPUTS[name][:2] for name, good in order}
            return [(name, good, post(server.url, *kwargs[name])) for name, good in order]

        with ThreadPoolExecutor(CLIENTS) as pool:
            answers = [answer for answers in pool.map(client, range(CLIENTS)) for answer in answers]
        counters = batching(server.url)
    assert len(answers) == CLIENTS * len(calls)
    for name, good, response in answers:
        assert response.headers["content-type"] == "application/json", (name, response.text[:200])
        if good:
            assert response.status_code == 200, (name, response.text[:200])
            assert_same_answer(response.json(), reference[name])
        else:
            assert response.status_code == BAD_INPUTS[name][2], (name, response.text[:200])
            assert isinstance(response.json()["error"], str)
    served = watched.sizes[1:]  # after the warm-up call
    assert sum(served) == CLIENTS * 3 * len(GOOD), "every good image ran exactly once; no bad one reached a batch"
    assert max(served) > 1, f"no batch formed under {CLIENTS} concurrent clients: {served}"
    assert counters["batches"] == len(served) and counters["rejected"] == counters["cancelled"] == 0


def test_queued_requests_run_as_one_batch_and_each_gets_its_own_answer(classifier, watched, reference):
    names = ["china (JPEG)", "digit 1 (PNG)", "flower (JPEG)", "digit 2 (Base64)"]
    with serve(create_app(classifier, backend=watched, max_batch=8, max_wait_ms=0)) as server:
        watched.hold()
        with ThreadPoolExecutor(1 + len(names)) as pool:
            first = pool.submit(post, server.url, *GOOD["digit 0 (PNG)"])
            assert watched.entered.wait(30), "the first request never reached the backend"
            queued = [pool.submit(post, server.url, *GOOD[name]) for name in names]
            wait_until(lambda: batching(server.url)["queued"] == len(names), "the four requests are queued")
            bad = [post(server.url, *BAD_INPUTS[name][:2]) for name in ("truncated png", "base64 of text")]
            assert [r.status_code for r in bad] == [400, 415]  # answered while the backend is still busy
            assert batching(server.url)["queued"] == len(names)  # bad images never join the queue
            watched.release()
            answers = [future.result(60).json() for future in queued]
        assert_same_answer(first.result(60).json(), reference["digit 0 (PNG)"])
    assert watched.sizes == [1, 1, len(names)]  # warm-up, the first request alone, then the four together
    for name, answer in zip(names, answers, strict=True):
        assert_same_answer(answer, reference[name])  # each caller got its own image's answer, in any order
    assert len({answer["inference_time_ms"] for answer in answers}) == 1  # one network call's time, shared


def test_a_full_queue_answers_503_json_with_retry_after_and_the_queued_requests_still_succeed(classifier, watched):
    with serve(create_app(classifier, backend=watched, max_batch=2, max_wait_ms=0, max_queue=2)) as server:
        watched.hold()
        with ThreadPoolExecutor(3) as pool:
            running = pool.submit(upload, server.url, "d0.png", SAMPLES["digit_0.png"])
            assert watched.entered.wait(30), "the first request never reached the backend"
            queued = [pool.submit(upload, server.url, f"d{d}.png", SAMPLES[f"digit_{d}.png"]) for d in (1, 2)]
            wait_until(lambda: batching(server.url)["queued"] == 2, "two requests are queued")
            refused = upload(server.url, "d0.png", SAMPLES["digit_0.png"])
            refused_base64 = post(server.url, *GOOD["digit 2 (Base64)"])
            watched.release()
            answers = [future.result(60) for future in (running, *queued)]
        counters = batching(server.url)
    for response in (refused, refused_base64):
        assert response.status_code == 503 and response.headers["content-type"] == "application/json"
        assert "queue is full" in response.json()["error"]
        assert int(response.headers["Retry-After"]) >= 1
    assert [r.status_code for r in answers] == [200] * 3
    assert [r.json()["top_class"] for r in answers] == ["0", "1", "2"]
    assert counters["rejected"] == 2 and watched.sizes == [1, 1, 2]


def raw_request(url: str, path: str, kwargs: dict[str, Any]) -> socket.socket:
    """Send a whole HTTP request on a socket of our own and return it unread (a client that may hang up)."""
    prepared = requests.Request("POST", url + path, **kwargs).prepare()
    host, port = url.removeprefix("http://").rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n" + "".join(f"{k}: {v}\r\n" for k, v in prepared.headers.items())
    sock.sendall(head.encode() + b"\r\n" + prepared.body)
    return sock


def test_a_client_that_disconnects_while_queued_is_dropped_from_its_batch(classifier, watched):
    with serve(create_app(classifier, backend=watched, max_batch=8, max_wait_ms=0)) as server:
        watched.hold()
        with ThreadPoolExecutor(1) as pool:
            running = pool.submit(upload, server.url, "d0.png", SAMPLES["digit_0.png"])
            assert watched.entered.wait(30), "the first request never reached the backend"
            leaving = raw_request(server.url, *GOOD["china (JPEG)"])
            wait_until(lambda: batching(server.url)["queued"] == 1, "the second request is queued")
            leaving.close()
            wait_until(lambda: batching(server.url)["cancelled"] == 1, "the server notices the disconnect")
            assert batching(server.url)["queued"] == 0
            watched.release()
            assert running.result(60).json()["top_class"] == "0"
        assert upload(server.url, "d1.png", SAMPLES["digit_1.png"]).json()["top_class"] == "1"
    assert watched.sizes == [1, 1, 1]  # warm-up, the first request, the last one: the gone client's image never ran


def test_stopping_the_server_answers_every_request_in_flight(classifier, watched):
    digits = [0, 1, 2, 0, 1]
    server = serve(create_app(classifier, backend=watched, max_batch=8, max_wait_ms=0))
    watched.hold()
    with ThreadPoolExecutor(len(digits)) as pool:
        answers = [pool.submit(upload, server.url, "d.png", SAMPLES[f"digit_{d}.png"]) for d in digits[:1]]
        assert watched.entered.wait(30), "the first request never reached the backend"
        answers += [pool.submit(upload, server.url, "d.png", SAMPLES[f"digit_{d}.png"]) for d in digits[1:]]
        wait_until(lambda: batching(server.url)["queued"] == len(digits) - 1, "the other requests are queued")
        stopping = threading.Thread(target=server.stop)
        stopping.start()
        wait_until(lambda: refuses_connections(server.port), "the stopping server refuses new connections")
        watched.release()
        responses = [future.result(60) for future in answers]
        stopping.join(60)
    assert not stopping.is_alive(), "stop() never returned"
    assert [r.status_code for r in responses] == [200] * len(digits)
    assert [r.json()["top_class"] for r in responses] == [str(d) for d in digits]
    assert watched.sizes == [1, 1, len(digits) - 1]


def refuses_connections(port: int) -> bool:
    """True once nothing accepts connections on 127.0.0.1:port."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_health_and_openapi_describe_the_batching(classifier, plain_url):
    app = create_app(classifier, backend="torch", max_batch=4, max_wait_ms=2.5, max_queue=16)
    with serve(app) as server:
        health = requests.get(server.url + "/health", timeout=10).json()
        document = requests.get(server.url + "/openapi.json", timeout=10).json()
        assert batcher_of(app) is not None and batcher_of(app).running
    assert health["backend"] == "torch"
    assert health["batching"] == {
        "max_batch": 4,
        "max_wait_ms": 2.5,
        "max_queue": 16,
        "queued": 0,
        "batches": 0,
        "mean_batch_size": 0.0,
        "rejected": 0,
        "cancelled": 0,
    }
    for path in ("/predict", "/predict/base64"):
        busy = document["paths"][path]["post"]["responses"]["503"]
        assert "Retry-After" in busy["headers"] and "ErrorBody" in str(busy["content"])
    unbatched = requests.get(plain_url + "/openapi.json", timeout=10).json()
    assert "503" not in unbatched["paths"]["/predict"]["post"]["responses"]
    assert requests.get(plain_url + "/health", timeout=10).json()["batching"] is None
    assert batcher_of(create_app(classifier, backend="torch")) is None


def test_each_server_run_of_one_app_gets_its_own_batcher(classifier):
    app = create_app(classifier, backend="torch", max_batch=4)
    with serve(app) as first, serve(app) as second:  # two at once: the batcher lives in each run's lifespan state
        for server, digit in ((first, 0), (second, 1), (first, 2)):
            assert upload(server.url, "d.png", SAMPLES[f"digit_{digit}.png"]).json()["top_class"] == str(digit)
        assert [batching(server.url)["batches"] for server in (first, second)] == [2, 1]
    assert not batcher_of(app).running
    with serve(app) as third:  # a stopped batcher cannot restart: a new run makes a new one
        assert upload(third.url, "d.png", SAMPLES["digit_0.png"]).json()["top_class"] == "0"
        assert batching(third.url)["batches"] == 1 and batcher_of(app).running


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_batch": 0}, "max_batch must be an integer >= 1"),
        ({"max_batch": 8, "max_queue": 4}, r"max_queue \(4\) must be >= max_batch \(8\)"),
        ({"max_batch": 8, "max_wait_ms": -1}, "max_wait_ms must be a finite number >= 0"),
        ({"max_batch": 8, "max_wait_ms": float("nan")}, "max_wait_ms must be a finite number >= 0"),
    ],
)
def test_create_app_refuses_settings_the_batcher_cannot_work_with(classifier, settings, message):
    with pytest.raises(ValueError, match=message):
        create_app(classifier, backend="torch", **settings)


def test_settings_travel_through_the_environment_for_worker_processes():
    settings = {"backend": "onnx-int8", "max_batch": 8, "max_wait_ms": 2.5, "max_queue": 32}
    environ = environment_for(**settings)
    assert set(environ) == set(ENVIRONMENT.values()) and environ["COURSE_IMAGE_MAX_BATCH"] == "8"
    assert settings_from_environment(environ) == settings
    assert settings_from_environment({}) == {}  # unset: create_app's defaults
    with pytest.raises(ValueError, match="COURSE_IMAGE_MAX_BATCH='eight' is not an integer"):
        settings_from_environment({"COURSE_IMAGE_MAX_BATCH": "eight"})
    with pytest.raises(ValueError, match="COURSE_IMAGE_MAX_WAIT_MS='soon' is not a number"):
        settings_from_environment({"COURSE_IMAGE_MAX_WAIT_MS": "soon"})
