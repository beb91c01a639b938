"""Notebook 08's Prometheus files against the real APIs' /metrics: every metric and label the alert rules use is
exported, the configuration is well-formed, and each likely mistake in either file is reported."""

from __future__ import annotations

import copy
import time

import pytest
import requests

from course_lib.apps import image_api, iris_fastapi
from course_lib.drift import image_drift_monitor
from course_lib.prometheus_config import check_config, check_rules, exported_series, load, selectors
from course_lib.servers import serve
from course_lib.vision.digits import digit_images, digit_png


@pytest.fixture(scope="module")
def exported(net, classifier) -> dict[str, set[str]]:
    """The series of the iris API and of the image API with a full drift window, read over HTTP."""
    with serve(iris_fastapi.create_app(net, model_version="v1")) as iris:
        requests.post(iris.url + "/predict", json={"features": [5.1, 3.5, 1.4, 0.2]}, timeout=10)
        iris_text = requests.get(iris.url + "/metrics", timeout=10).text
    monitor = image_drift_monitor(digit_images()[0][:200], window=2)
    with serve(image_api.create_app(classifier, backend="torch", drift_monitor=monitor)) as image:
        for index in range(2):
            requests.post(image.url + "/predict", files={"file": ("d.png", digit_png(index))}, timeout=30)
        image_text = requests.get(image.url + "/metrics", timeout=10).text
        deadline = time.monotonic() + 30
        while "input_drifted{" not in image_text and time.monotonic() < deadline:  # statistics join after the answer
            time.sleep(0.05)
            image_text = requests.get(image.url + "/metrics", timeout=10).text
    return {**exported_series(iris_text), **exported_series(image_text)}


def test_the_alert_rules_use_only_what_the_apis_export(exported):
    assert check_rules(load("alerts.yml"), exported) == []


def test_the_configuration_is_well_formed():
    assert check_config(load("prometheus.yml")) == []


def test_every_alert_is_checked_for_its_metrics():
    """The rules' selectors are found: a check that found none would pass any file."""
    names = {
        name
        for group in load("alerts.yml")["groups"]
        for rule in group["rules"]
        for name, _ in selectors(rule["expr"])[0]
    }
    assert names == {
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "http_request_duration_seconds_count",
        "up",
        "input_drifted",
    }


def changed_rules(change) -> dict:
    rules = copy.deepcopy(load("alerts.yml"))
    change(rules["groups"][0]["rules"][0])
    return rules


@pytest.mark.parametrize(
    "change, problem",
    [
        (
            lambda r: r.update(expr=r["expr"].replace("http_requests_total", "http_request_total")),
            "metric http_request_total is not exported",
        ),
        (
            lambda r: r.update(expr=r["expr"].replace('route="/predict"', 'path="/predict"')),
            "metric http_requests_total has no label path",
        ),
        (
            lambda r: r.update(expr=r["expr"].replace("sum by (job)", "sum by (service)")),
            "grouping label service is on none",
        ),
        (lambda r: r.update({"for": "2 minutes"}), "is not a Prometheus duration"),
        (lambda r: r["labels"].update(severity="critical"), "labels.severity must be one of"),
        (lambda r: r.update(annotations={}), "no annotations.summary"),
        (lambda r: r.update(expr=r["expr"] + ")"), "unbalanced brackets"),
    ],
    ids=["metric-typo", "label-typo", "grouping-label", "duration", "severity", "summary", "brackets"],
)
def test_each_mistake_in_a_rule_is_reported(exported, change, problem):
    problems = check_rules(changed_rules(change), exported)
    assert any(problem in line for line in problems), problems


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda c: c["global"].update(scrape_interval="15"), "global.scrape_interval"),
        (lambda c: c.update(rule_files=["alert.yml"]), "rule file alert.yml not found"),
        (lambda c: c["scrape_configs"][1].update(job_name="iris-api"), "unique job_name"),
        (
            lambda c: c["scrape_configs"][0]["static_configs"][0].update(targets=["http://iris-api-1:8000"]),
            "is not host:port",
        ),
        (lambda c: c["scrape_configs"][0].update(metrics_path="/metric"), "serve /metrics"),
    ],
    ids=["interval", "rule-file", "duplicate-job", "target-url", "metrics-path"],
)
def test_each_mistake_in_the_configuration_is_reported(change, problem):
    config = copy.deepcopy(load("prometheus.yml"))
    change(config)
    assert any(problem in line for line in check_config(config)), check_config(config)
