"""Headless Chromium (Debian's `chromium` package) driven by Playwright, with no browser download."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
HOW_TO_ENABLE = (
    "headless Chromium was not found. On Debian/Ubuntu: `sudo apt-get install chromium` "
    "(or set COURSE_CHROMIUM=/path/to/chromium); `playwright install` is not needed."
)


def chromium_path() -> str | None:
    """Path of a Chromium executable (COURSE_CHROMIUM, then `chromium` on PATH), or None."""
    candidates = [os.environ.get("COURSE_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")]
    return next((c for c in candidates if c and Path(c).exists()), None)


@contextmanager
def chromium_page(viewport: tuple[int, int] = (1280, 900)) -> Iterator[Any]:
    """Yield a Playwright page in headless Chromium; RuntimeError with set-up advice when it is missing."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise RuntimeError(HOW_TO_ENABLE)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            yield page
        finally:
            browser.close()


def _running_loop() -> bool:
    """True when this thread runs an asyncio event loop (as a Jupyter kernel's main thread does)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def screenshot(url: str, path: str | os.PathLike[str], wait_for: str | None = None, timeout_ms: int = 30_000) -> Path:
    """Open url in headless Chromium, wait for a CSS selector if given, and save a PNG screenshot."""
    if _running_loop():
        # Playwright's sync API refuses to run inside an asyncio loop (a notebook cell): use a worker thread.
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(screenshot, url, path, wait_for, timeout_ms).result()
    with chromium_page() as page:
        page.goto(url, timeout=timeout_ms)
        if wait_for:
            page.wait_for_selector(wait_for, timeout=timeout_ms)
        page.screenshot(path=str(path), full_page=False)
    return Path(path)
