"""Shared fixtures: a headless Chromium page for browser tests (skip on a learner's machine, fail in CI)."""

from __future__ import annotations

import os

import pytest

from course_lib.browser import HOW_TO_ENABLE, chromium_page, chromium_path


@pytest.fixture
def page():
    """A Playwright page in Debian's headless Chromium."""
    if chromium_path() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true but " + HOW_TO_ENABLE)
        pytest.skip(HOW_TO_ENABLE)
    with chromium_page() as page:
        yield page


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Print the figures tests recorded with record_property("measured", ...) (soak runs, memory growth)."""
    lines = [f"{report.nodeid}: {value}"
             for report in terminalreporter.getreports("passed") + terminalreporter.getreports("failed")
             for key, value in report.user_properties if key == "measured"]
    if lines:
        terminalreporter.section("measured")
        for line in sorted(set(lines)):
            terminalreporter.write_line(line)
