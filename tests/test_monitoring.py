"""GET /metrics and the request log of the three APIs over real HTTP, one suite parametrized over the apps:
counters move by exactly the requests sent, labels stay bounded, the request id travels, no body is logged."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from course_lib.apps import image_api, iris_fastapi, iris_flask
from course_lib.apps.iris_fastapi import TorchIrisClassifier
from course_lib.drift import image_drift_monitor
from course_lib.monitoring import (
    capture_request_log,
    histogram_buckets,
    histogram_quantile,
    parse_metrics,
    request_id_from,
    sample_value,
)
from course_lib.servers import serve
from course_lib.vision.digits import digit_images, digit_png

SECRET = "do-not-log-this-4711"


@dataclass(frozen=True)
class Api:
    """One app under test: how to send a good and a bad request, and the route and status they get."""

    name: str
    url: str
    good: Callable[[str, dict[str, str]], requests.Response]
    bad: Callable[[str], requests.Response]
    bad_status: int
    model_name: str


def iris_good(url: str, headers: dict[str, str]) -> requests.Response:
    """A valid iris prediction."""
    return requests.post(url + "/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}, headers=headers, timeout=30)


def iris_bad(url: str) -> requests.Response:
    """An invalid iris request that carries a secret (it must never reach the log)."""
    return requests.post(url + "/predict", json={"features": [SECRET]}, timeout=30)


def image_good(url: str, headers: dict[str, str]) -> requests.Response:
    """A valid image upload."""
    files = {"file": ("d.png", digit_png(3), "image/png")}
    return requests.post(url + "/predict", files=files, headers=headers, timeout=30)


def image_bad(url: str) -> requests.Response:
    """An upload that is not an image (and carries a secret)."""
    return requests.post(url + "/predict", files={"file": ("x.png", SECRET.encode(), "image/png")}, timeout=30)


@pytest.fixture(scope="module", params=["iris_flask", "iris_fastapi", "image_api"])
def api(request, forest, net, classifier) -> Iterator[Api]:
    """Each of the three apps, running with model_version="v-test"."""
    name = request.param
    if name == "iris_flask":
        app, api = iris_flask.create_app(forest, model_version="v-test"), (iris_good, iris_bad, 400)
        model_name = "RandomForestClassifier"
    elif name == "iris_fastapi":
        app, api = iris_fastapi.create_app(net, model_version="v-test"), (iris_good, iris_bad, 422)
        model_name = "SimpleNN"
    else:
        app, api = (
            image_api.create_app(classifier, backend="torch", model_version="v-test"),
            (image_good, image_bad, 415),
        )
        model_name = "digits"
    with serve(app) as server:
        yield Api(name, server.url, *api, model_name)


def scrape(url: str) -> dict[str, Any]:
    """GET /metrics, checked to be Prometheus' text format, parsed."""
    response = requests.get(url + "/metrics", timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return parse_metrics(response.text)


def count(families: dict[str, Any], route: str, status: int) -> float:
    """http_requests_total for one route and status."""
    return sample_value(families, "http_requests_total", route=route, status=str(status))


def test_counters_move_by_exactly_the_requests_sent(api):
    before = scrape(api.url)
    for _ in range(7):
        assert api.good(api.url, {}).status_code == 200
    for _ in range(3):
        assert api.bad(api.url).status_code == api.bad_status
    assert requests.get(api.url + "/no/such/path", timeout=30).status_code == 404
    after = scrape(api.url)  # two scrapes in a row: /metrics does not count itself
    again = scrape(api.url)
    assert count(after, "/predict", 200) - count(before, "/predict", 200) == 7
    assert count(after, "/predict", api.bad_status) - count(before, "/predict", api.bad_status) == 3
    assert count(after, "unmatched", 404) - count(before, "unmatched", 404) == 1
    latency_count = "http_request_duration_seconds_count"
    moved = sample_value(after, latency_count, route="/predict") - sample_value(before, latency_count, route="/predict")
    assert moved == 10
    assert sample_value(again, "http_requests_total") == sample_value(after, "http_requests_total")
    assert sample_value(after, "http_requests_in_flight") == 0
    info = [s.labels for s in after["model_info"].samples]
    assert info == [info[0]] and info[0]["name"] == api.model_name and info[0]["version"] == "v-test"


def test_latency_histogram_is_cumulative_and_counts_every_answer(api):
    families = scrape(api.url)
    buckets = histogram_buckets(families, "http_request_duration_seconds", route="/predict")
    counts = [c for _, c in buckets]
    assert counts == sorted(counts) and buckets[-1][0] == float("inf")
    assert counts[-1] == sample_value(families, "http_request_duration_seconds_count", route="/predict") > 0
    assert 0 < histogram_quantile(0.95, buckets) < 10


def test_labels_stay_bounded_whatever_paths_and_methods_arrive(api):
    for i in range(20):
        requests.get(f"{api.url}/scan/{i}?q={i}", timeout=30)
    requests.request("BREW", api.url + "/predict", timeout=30)
    families = scrape(api.url)
    routes = {s.labels["route"] for s in families["http_requests"].samples}
    methods = {s.labels["method"] for s in families["http_requests"].samples}
    assert not any(route.startswith("/scan") for route in routes), routes
    assert methods <= {"GET", "POST", "other"}, methods


def test_metrics_route_obeys_the_rules_of_every_route(api):
    assert requests.post(api.url + "/metrics", timeout=30).status_code == 405
    too_large = requests.get(api.url + "/metrics", data=b"x" * (32 * 1024 * 1024), timeout=60)
    assert too_large.status_code == 413 and too_large.headers["Content-Type"].startswith("application/json")
    assert requests.get(api.url + "/metrics?format=%00%ff", timeout=30).status_code == 200
    assert "/metrics" not in requests.get(api.url + "/openapi.json", timeout=30).text


def test_request_id_is_returned_logged_and_never_echoes_unsafe_text(api):
    with capture_request_log() as lines:
        given = api.good(api.url, {"X-Request-ID": "order-42.retry:1"})
        unsafe = api.good(api.url, {"X-Request-ID": 'a" , "status": 200'})
        fresh = api.good(api.url, {})
        bad = api.bad(api.url)
    assert given.headers["X-Request-ID"] == "order-42.retry:1"
    for response in (unsafe, fresh, bad):
        assert len(response.headers["X-Request-ID"]) == 32 and response.headers["X-Request-ID"].isalnum()
    assert fresh.headers["X-Request-ID"] != unsafe.headers["X-Request-ID"]
    ids = [line["request_id"] for line in lines]
    assert ids == [r.headers["X-Request-ID"] for r in (given, unsafe, fresh, bad)]
    for line, status in zip(lines, (200, 200, 200, api.bad_status), strict=True):
        assert set(line) == {"request_id", "method", "route", "status", "latency_ms", "model_version"}
        assert (line["method"], line["route"], line["status"], line["model_version"]) == (
            "POST",
            "/predict",
            status,
            "v-test",
        )
        assert line["latency_ms"] > 0
    assert SECRET not in json.dumps(lines)


def test_request_id_from_accepts_short_tokens_only():
    assert request_id_from("abc-1_2.3:4") == "abc-1_2.3:4"
    for unsafe in ("", None, "a b", "x" * 129, "line\nbreak", 'quote"', "ü"):
        generated = request_id_from(unsafe)
        assert generated != unsafe and len(generated) == 32


class Waiting:
    """The real iris network behind a gate: predictions wait until the test opens it (a request held in flight)."""

    def __init__(self, net) -> None:
        self.inner = TorchIrisClassifier(net)
        self.classes_ = self.inner.classes_
        self.entered, self.gate = threading.Event(), threading.Event()

    def predict_proba(self, X):
        self.entered.set()
        self.gate.wait(30)
        return self.inner.predict_proba(X)


class Crashing:
    """A model whose every prediction raises."""

    classes_ = np.arange(3)

    def predict_proba(self, X):
        raise RuntimeError(SECRET)


def test_in_flight_gauge_counts_a_request_being_handled(net):
    model = Waiting(net)
    with serve(iris_fastapi.create_app(model)) as server:
        worker = threading.Thread(target=iris_good, args=(server.url, {}))
        worker.start()
        assert model.entered.wait(30)
        assert sample_value(scrape(server.url), "http_requests_in_flight") == 1
        model.gate.set()
        worker.join(30)
        assert sample_value(scrape(server.url), "http_requests_in_flight") == 0


@pytest.mark.parametrize("create_app", [iris_flask.create_app, iris_fastapi.create_app], ids=["flask", "fastapi"])
def test_a_crashing_model_is_counted_as_500_on_its_route(create_app):
    with serve(create_app(Crashing())) as server, capture_request_log() as lines:
        assert iris_good(server.url, {}).status_code == 500
        assert count(scrape(server.url), "/predict", 500) == 1
    assert [line["status"] for line in lines] == [500]
    assert SECRET not in json.dumps(lines)


def test_histogram_quantile_interpolates_inside_the_bucket_as_promql_does():
    buckets = [(0.1, 50.0), (0.2, 100.0), (float("inf"), 100.0)]
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.1)
    assert histogram_quantile(0.75, buckets) == pytest.approx(0.15)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.05)
    assert histogram_quantile(0.99, [(0.1, 10.0), (float("inf"), 20.0)]) == 0.1  # in +Inf: the highest finite bound
    assert np.isnan(histogram_quantile(0.5, [(0.1, 0.0), (float("inf"), 0.0)]))


def test_scrapes_during_traffic_never_fail_and_miss_no_request(api):
    before = scrape(api.url)
    statuses: list[int] = []

    def client(_: int) -> None:
        for _ in range(25):
            statuses.append(api.good(api.url, {}).status_code)

    def scraper(_: int) -> None:
        for _ in range(20):
            response = requests.get(api.url + "/metrics", timeout=30)
            statuses.append(response.status_code)
            parse_metrics(response.text)  # every scrape parses, even mid-update

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda i: client(i) if i < 4 else scraper(i), range(6)))
    assert set(statuses) == {200}
    assert count(scrape(api.url), "/predict", 200) - count(before, "/predict", 200) == 100


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE"]),
    query=st.text(max_size=40),
    accept=st.sampled_from(["*/*", "application/openmetrics-text; version=1.0.0", "text/html", "\x00", ""]),
    body=st.binary(max_size=256),
)
def test_metrics_route_answers_any_request_without_a_server_error(api, method, query, accept, body):
    response = requests.request(
        method, api.url + "/metrics", params={"q": query}, headers={"Accept": accept}, data=body, timeout=30
    )
    assert response.status_code < 500, response.text


def darker_png(image: Image.Image) -> bytes:
    """The image as PNG, 40 % darker (a camera that lost light)."""
    buffer = io.BytesIO()
    image.point(lambda value: int(value * 0.6)).save(buffer, format="PNG")
    return buffer.getvalue()


def plain_png(image: Image.Image) -> bytes:
    """The image as PNG, unchanged."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_image_api_exposes_input_drift_of_the_images_it_answered(classifier):
    train, held_out = digit_images()
    monitor = image_drift_monitor(train, window=60)
    with serve(image_api.create_app(classifier, backend="torch", drift_monitor=monitor)) as server:
        sent = 0

        def send(images, encode) -> dict[str, Any]:
            """POST the images and one non-image; the metrics once every answered image reached the window."""
            nonlocal sent
            for image in images:
                files = {"file": ("d.png", encode(image), "image/png")}
                assert requests.post(server.url + "/predict", files=files, timeout=30).status_code == 200
            assert requests.post(server.url + "/predict", files={"file": ("x", b"not an image")}).status_code == 415
            sent += len(images)
            deadline = time.monotonic() + 30  # the statistics are added after each answer has been sent
            while monitor.seen < sent and time.monotonic() < deadline:
                time.sleep(0.01)
            return scrape(server.url)

        def drifted(families: dict[str, Any]) -> set[str]:
            return {s.labels["feature"] for s in families["input_drifted"].samples if s.value == 1}

        half = send(held_out[:30], plain_png)
        assert sample_value(half, "input_drift_window_rows") == 30  # only answered images count
        assert "input_drifted" not in half  # no verdict on a half-empty window
        normal = send(held_out[30:60], plain_png)
        assert sample_value(normal, "input_drift_window_rows") == 60 and drifted(normal) == set()
        dark = send(held_out[60:120], darker_png)
        assert "brightness" in drifted(dark)
        assert sample_value(dark, "input_drift_psi", feature="brightness") > 0.25
        assert sample_value(dark, "input_drift_ks_pvalue", feature="brightness") < 0.01
        recovered = send(held_out[120:180], plain_png)
        assert drifted(recovered) == set()
