"""Shared test set-up: the trained models and the iris FastAPI server (once per session), concurrent clients, the
browser rule (skip on a learner's machine, fail in CI), a Chromium page, measured figures."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from helpers import require_chromium

from course_lib.apps import iris_fastapi
from course_lib.browser import chromium_page, chromium_path
from course_lib.models import train_iris_forest, train_simple_nn
from course_lib.servers import serve
from course_lib.vision import load_classifier

CONCURRENT_CLIENTS = 8


@pytest.fixture(scope="session")
def forest():
    """The source's iris RandomForest (deterministic), trained once per test session."""
    return train_iris_forest()[0]


@pytest.fixture(scope="session")
def net():
    """The iris SimpleNN (deterministic), trained once per test session."""
    return train_simple_nn()[0]


@pytest.fixture(scope="session")
def classifier():
    """The offline digits image classifier (trained once and cached on disk)."""
    return load_classifier("digits")


@pytest.fixture(scope="session")
def iris_fastapi_server(net):
    """The iris FastAPI app around `net`, running once per session (its HTTP tests and its browser tests)."""
    with serve(iris_fastapi.create_app(net)) as server:
        yield server


@pytest.fixture(scope="session")
def post_concurrently() -> Callable[[str, Sequence[Any]], list[dict]]:
    """post_concurrently(url, rows): POST {"features": row} for every row from 8 clients at once; the JSON answers."""

    def post(url: str, rows: Sequence[Any]) -> list[dict]:
        def ask(row: Any) -> dict:
            response = requests.post(url, json={"features": list(map(float, row))}, timeout=30)
            assert response.status_code == 200, response.text
            return response.json()

        with ThreadPoolExecutor(CONCURRENT_CLIENTS) as pool:
            return list(pool.map(ask, rows))

    return post


def pytest_collection_modifyitems(config, items):
    """A test that uses the `page` fixture is a browser test, marked or not, so the browser rule applies to it."""
    for item in items:
        if "page" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    """The one browser rule for every test marked `browser`, applied before its fixtures start any server."""
    if item.get_closest_marker("browser"):
        require_chromium(chromium_path(), os.environ)


@pytest.fixture
def page():
    """A Playwright page in Debian's headless Chromium."""
    with chromium_page() as page:
        yield page


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Print the figures tests recorded with record_property("measured", ...) (soak runs, memory growth)."""
    lines = [
        f"{report.nodeid}: {value}"
        for report in terminalreporter.getreports("passed") + terminalreporter.getreports("failed")
        for key, value in report.user_properties
        if key == "measured"
    ]
    if lines:
        terminalreporter.section("measured")
        for line in sorted(set(lines)):
            terminalreporter.write_line(line)
