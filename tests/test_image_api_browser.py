"""The image API's demo page in a real headless Chromium: pick a sample image, read the top-5 bars."""

from __future__ import annotations

import pytest
import requests

from course_lib.apps.image_api import create_app
from course_lib.servers import serve
from course_lib.vision import sample_images

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def api_url(classifier):
    """The API around conftest's session digits classifier."""
    with serve(create_app(classifier, backend="torch")) as server:
        yield server.url


def test_demo_page_shows_the_top_5_of_an_uploaded_image(page, api_url):
    data = sample_images()["digit_2.png"]
    files = {"file": ("digit_2.png", data, "image/png")}
    expected = requests.post(api_url + "/predict", files=files, timeout=30).json()
    requests_seen = []
    page.on("request", lambda request: requests_seen.append(request.url))
    page.goto(api_url + "/")
    page.wait_for_function("document.getElementById('model').textContent.includes('digits')")
    page.set_input_files("#file", files=[{"name": "digit_2.png", "mimeType": "image/png", "buffer": data}])
    page.wait_for_selector("#bars li:nth-child(5)")
    items = page.locator("#bars li")
    classes = [items.nth(i).get_attribute("data-class") for i in range(items.count())]
    assert classes == [entry["class"] for entry in expected["top_5"]]
    assert classes[0] == "2"
    assert "top_class: 2" in page.text_content("#status")
    first_bar = page.locator("#bars li .fill").first.evaluate("el => el.getBoundingClientRect().width")
    last_bar = page.locator("#bars li .fill").last.evaluate("el => el.getBoundingClientRect().width")
    assert first_bar > last_bar > 0
    assert page.is_visible("#preview")
    assert all(url.startswith(api_url) or url.startswith("blob:") for url in requests_seen), requests_seen


def test_demo_page_shows_the_api_error_for_a_non_image(page, api_url):
    page.goto(api_url + "/")
    page.set_input_files("#file", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not an image"}])
    page.wait_for_selector("#status.error")
    assert "415" in page.text_content("#status") and "not a JPEG" in page.text_content("#status")
    assert page.locator("#bars li").count() == 0
