"""Shared test set-up: the trained models (once per session), the browser rule (skip on a learner's machine, fail
in CI), a Chromium page, measured figures."""

from __future__ import annotations

import os

import pytest
from helpers import require_chromium

from course_lib.browser import chromium_page, chromium_path
from course_lib.models import train_iris_forest, train_simple_nn
from course_lib.vision import load_classifier


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
