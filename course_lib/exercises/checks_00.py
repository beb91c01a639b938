"""Checks for the exercises of notebook 00 (setup): each starts the learner's app and calls it over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import requests

from course_lib.servers import serve


def check_echo_app(create_app: Callable[[], Any]) -> None:
    """Exercise 1: POST /echo answers {"echo": <the JSON body>} with status 200."""
    app = create_app()
    body = {"features": [5.1, 3.5, 1.4, 0.2], "name": "アヤメ"}
    with serve(app) as server:
        response = requests.post(server.url + "/echo", json=body, timeout=10)
    assert response.status_code == 200, f"/echo のステータスが {response.status_code} です（200 を期待）"
    assert response.json() == {"echo": body}, f"/echo の応答が期待と違います: {response.json()}"


def check_add_app(create_app: Callable[[], Any]) -> None:
    """Exercise 2: GET /add?a=..&b=.. answers {"sum": a + b}; a non-number gives 422."""
    app = create_app()
    with serve(app) as server:
        good = requests.get(server.url + "/add", params={"a": 2.5, "b": 4}, timeout=10)
        bad = requests.get(server.url + "/add", params={"a": "abc", "b": 1}, timeout=10)
    assert good.status_code == 200, f"/add のステータスが {good.status_code} です（200 を期待）"
    assert good.json() == {"sum": 6.5}, f"/add?a=2.5&b=4 の応答が期待と違います: {good.json()}"
    assert bad.status_code == 422, f"a=abc のとき 422 を期待しましたが {bad.status_code} でした（型ヒントを付けましたか？）"


def check_health_probe(is_healthy: Callable[[str], bool]) -> None:
    """Exercise 3: is_healthy(url) is True for a running server and False (no exception) for a stopped one."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    server = serve(app)
    url = server.url
    try:
        assert is_healthy(url) is True, "起動中のサーバーで True が返りませんでした"
    finally:
        server.stop()
    assert is_healthy(url) is False, "停止したサーバーでは例外ではなく False を返してください"
