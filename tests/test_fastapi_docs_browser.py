"""Swagger UI /docs and ReDoc /redoc of the iris FastAPI app in a real headless Chromium, with no request off 127.0.0.1."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from course_lib.apps.iris_fastapi import create_app
from course_lib.models import train_simple_nn
from course_lib.servers import serve

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def api_url():
    """A running iris FastAPI server."""
    with serve(create_app(train_simple_nn()[0])) as server:
        yield server.url


def record_requests(page) -> tuple[list[str], list[str]]:
    """Collect the URL of every request the page starts, and of those the browser blocked by our CSP."""
    seen: list[str] = []
    blocked: list[str] = []
    page.on("request", lambda request: seen.append(request.url))
    page.on("requestfailed", lambda request: blocked.append(request.url) if request.failure == "csp" else None)
    return seen, blocked


def left_the_machine(seen: list[str], blocked: list[str]) -> list[str]:
    """Requests to a host other than 127.0.0.1 that the browser actually sent (data:/blob: stay in the browser)."""
    return [url for url in seen
            if urlsplit(url).scheme not in {"data", "blob"} and urlsplit(url).hostname != "127.0.0.1" and url not in blocked]


def test_swagger_ui_lists_the_operations_offline(page, api_url):
    seen, blocked = record_requests(page)
    page.goto(api_url + "/docs")
    page.wait_for_selector(".opblock-summary-path", timeout=30_000)
    paths = page.locator(".opblock-summary-path").all_text_contents()
    methods = page.locator(".opblock-summary-method").all_text_contents()
    assert sorted(zip(methods, paths)) == [("GET", "/health"), ("POST", "/predict"), ("POST", "/predict/batch")]
    assert "Iris inference API" in page.locator(".info .title").text_content()
    assert any(url.endswith("/static-offline-docs/swagger-ui-bundle.js") for url in seen)
    assert any(url.endswith("/openapi.json") for url in seen)
    assert left_the_machine(seen, blocked) == []


def test_swagger_ui_try_it_out_calls_the_api(page, api_url):
    seen, blocked = record_requests(page)
    page.goto(api_url + "/docs")
    page.locator("#operations-default-predict_predict_post .opblock-summary").click()
    page.locator("#operations-default-predict_predict_post button.try-out__btn").click()
    page.locator("#operations-default-predict_predict_post button.execute").click()
    response = page.locator("#operations-default-predict_predict_post .responses-table.live-responses-table")
    response.wait_for(timeout=30_000)
    assert '"class_name": "setosa"' in response.text_content()
    assert any(url == api_url + "/predict" for url in seen)
    assert left_the_machine(seen, blocked) == []


def test_redoc_renders_offline(page, api_url):
    seen, blocked = record_requests(page)
    page.goto(api_url + "/redoc")
    page.wait_for_selector("h1", timeout=30_000)
    page.get_by_text("Classify one flower").first.wait_for(timeout=30_000)
    assert "Iris inference API" in page.locator("h1").first.text_content()
    assert any(url.endswith("/static-offline-docs/redoc.standalone.js") for url in seen)
    # ReDoc's bundle always shows a sidebar logo from cdn.redoc.ly; the page's Content-Security-Policy stops it in the browser
    assert all(urlsplit(url).hostname == "cdn.redoc.ly" for url in blocked), blocked
    assert left_the_machine(seen, blocked) == []


def test_screenshot_works_inside_a_running_event_loop(api_url, tmp_path):
    """A notebook cell runs inside the kernel's asyncio loop, where Playwright's sync API refuses to start."""
    import asyncio

    from course_lib.browser import chromium_path, screenshot

    if chromium_path() is None:
        pytest.skip("headless Chromium is not installed")

    async def in_a_loop():
        return screenshot(api_url + "/docs", tmp_path / "docs.png", wait_for=".opblock-summary-path")

    shot = asyncio.run(in_a_loop())
    assert shot.read_bytes().startswith(b"\x89PNG") and shot.stat().st_size > 10_000
