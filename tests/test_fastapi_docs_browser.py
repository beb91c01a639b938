"""Swagger UI /docs and ReDoc /redoc of the iris FastAPI app in a real headless Chromium, no request off 127.0.0.1.

Also the browser rule of conftest (skip without Chromium on a learner's machine, fail in CI) and its unit tests.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from helpers import require_chromium, running_in_ci

from course_lib.browser import HOW_TO_ENABLE


def visit(page, url: str) -> tuple[list[str], list[str]]:
    """Open url, collecting the URL of every request the page starts and of those the browser blocked by our CSP."""
    seen: list[str] = []
    blocked: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    page.on("requestfailed", lambda request: blocked.append(request.url) if request.failure == "csp" else None)
    page.goto(url)
    return seen, blocked


def left_the_machine(seen: list[str], blocked: list[str]) -> list[str]:
    """Requests to a host other than 127.0.0.1 that the browser actually sent (data:/blob: stay in the browser)."""
    return [
        url
        for url in seen
        if urlsplit(url).scheme not in {"data", "blob"} and urlsplit(url).hostname != "127.0.0.1" and url not in blocked
    ]


@pytest.mark.browser
def test_swagger_ui_lists_the_operations_offline(page, iris_fastapi_server):
    seen, blocked = visit(page, iris_fastapi_server.url + "/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    paths = page.locator(".opblock-summary-path").all_text_contents()
    methods = page.locator(".opblock-summary-method").all_text_contents()
    expected = [("GET", "/health"), ("POST", "/predict"), ("POST", "/predict/batch")]
    assert sorted(zip(methods, paths, strict=True)) == expected
    assert "Iris inference API" in page.locator(".info .title").text_content()
    assert any(url.endswith("/static-offline-docs/swagger-ui-bundle.js") for url in seen)
    assert any(url.endswith("/openapi.json") for url in seen)
    assert left_the_machine(seen, blocked) == []


@pytest.mark.browser
def test_swagger_ui_try_it_out_calls_the_api(page, iris_fastapi_server):
    seen, blocked = visit(page, iris_fastapi_server.url + "/docs")
    page.locator("#operations-default-predict_predict_post .opblock-summary").click()
    page.locator("#operations-default-predict_predict_post button.try-out__btn").click()
    page.locator("#operations-default-predict_predict_post button.execute").click()
    response = page.locator("#operations-default-predict_predict_post .responses-table.live-responses-table")
    response.wait_for(timeout=30_000)
    assert '"class_name": "setosa"' in response.text_content()
    assert any(url == iris_fastapi_server.url + "/predict" for url in seen)
    assert left_the_machine(seen, blocked) == []


@pytest.mark.browser
def test_redoc_renders_offline(page, iris_fastapi_server):
    seen, blocked = visit(page, iris_fastapi_server.url + "/redoc")
    page.wait_for_selector("h1", timeout=30_000)
    page.get_by_text("Classify one flower").first.wait_for(timeout=30_000)
    assert "Iris inference API" in page.locator("h1").first.text_content()
    assert any(url.endswith("/static-offline-docs/redoc.standalone.js") for url in seen)
    # ReDoc's bundle always shows a sidebar logo from cdn.redoc.ly; the page's Content-Security-Policy stops it
    assert all(urlsplit(url).hostname == "cdn.redoc.ly" for url in blocked), blocked
    assert left_the_machine(seen, blocked) == []


@pytest.mark.browser
def test_screenshot_works_inside_a_running_event_loop(iris_fastapi_server, tmp_path):
    """A notebook cell runs inside the kernel's asyncio loop, where Playwright's sync API refuses to start."""
    import asyncio

    from course_lib.browser import screenshot

    async def in_a_loop():
        return screenshot(iris_fastapi_server.url + "/docs", tmp_path / "docs.png", wait_for=".opblock-summary-path")

    shot = asyncio.run(in_a_loop())
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000


@pytest.mark.parametrize("value", ["true", "TRUE", "1", "yes", " yes ", "on", "github-actions"])
def test_the_browser_rule_fails_without_chromium_in_ci(value):
    environ = {"CI": value}
    assert running_in_ci(environ)
    with pytest.raises(pytest.fail.Exception, match=f"CI={value!r} but headless Chromium was not found"):
        require_chromium(None, environ)


@pytest.mark.parametrize(
    "environ", [{}, {"CI": ""}, {"CI": "false"}, {"CI": "False"}, {"CI": "0"}, {"CI": "no"}, {"CI": "off"}], ids=repr
)
def test_the_browser_rule_skips_without_chromium_outside_ci(environ):
    assert not running_in_ci(environ)
    with pytest.raises(pytest.skip.Exception, match="headless Chromium was not found"):
        require_chromium(None, environ)


@pytest.mark.parametrize("environ", [{}, {"CI": "true"}], ids=repr)
def test_the_browser_rule_lets_a_test_run_when_chromium_is_there(environ):
    assert require_chromium("/usr/bin/chromium", environ) == "/usr/bin/chromium"


@pytest.mark.parametrize(("ci", "outcome"), [("1", "errors"), ("false", "skipped")])
def test_conftest_applies_the_rule_to_the_browser_tests_of_both_files(ci, outcome):
    """Run two browser tests in a child pytest where no Chromium can be found: both fail in CI, both skip elsewhere."""
    here = Path(__file__).resolve().parent
    env = {key: value for key, value in os.environ.items() if key not in {"COURSE_CHROMIUM", "PYTEST_XDIST_WORKER"}}
    env.update(CI=ci, PATH=str(Path(sys.executable).parent))  # no chromium on this PATH
    tests = [
        f"{here / 'test_fastapi_docs_browser.py'}::test_screenshot_works_inside_a_running_event_loop",
        f"{here / 'test_image_api_browser.py'}::test_demo_page_shows_the_api_error_for_a_non_image",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "0", "-p", "no:randomly", "-rA", *tests],
        cwd=here.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    outcomes = ("ERROR ", "SKIPPED ", "PASSED ", "FAILED ")
    report = [line for line in result.stdout.splitlines() if line.startswith(outcomes)]
    if outcome == "errors":  # pytest.fail in set-up: the test never ran, and the run fails
        assert result.returncode == 1, result.stdout[-3000:]
        assert [line.split(" - ")[1] for line in report] == [f"Failed: CI={ci!r} but {HOW_TO_ENABLE}"] * 2, report
    else:
        assert result.returncode == 0, result.stdout[-3000:]
        assert result.stdout.splitlines()[-1].split(" in ")[0].strip("= ") == "2 skipped", result.stdout[-3000:]
        assert len(report) == 1 and report[0].startswith("SKIPPED [2] ") and report[0].endswith(HOW_TO_ENABLE), report
