"""Checks for the exercises of notebook 00 (setup): each starts the learner's app and calls it over HTTP."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import requests
from flask import Flask

from course_lib.servers import serve

PROBE_LIMIT_S = 10.0  # the longest the check waits for one call of the learner's is_healthy
HANG_S = 60.0  # how long the hanging server holds a request unless the check releases it earlier


def check_echo_app(create_app: Callable[[], Any]) -> None:
    """Exercise 1: POST /echo answers {"echo": <the JSON body>} with status 200, for an object and for an array."""
    app = create_app()
    bodies = [{"features": [5.1, 3.5, 1.4, 0.2], "name": "アヤメ"}, [1, "two", None, {"three": 3.0}]]
    with serve(app) as server, requests.Session() as session:
        for body in bodies:
            response = session.post(server.url + "/echo", json=body, timeout=10)
            hint = '@app.post("/echo") にしましたか？'
            if response.status_code >= 500:
                hint = "サーバーで例外が起きました。出力されたトレースバックを見てください"
            assert response.status_code == 200, (
                f"{body!r} を POST /echo に送ったときのステータスが {response.status_code} です（200 を期待。{hint}）"
            )
            assert response.headers.get("Content-Type", "").startswith("application/json"), (
                f"/echo の応答が JSON ではありません（Content-Type: {response.headers.get('Content-Type')}）"
            )
            assert response.json() == {"echo": body}, (
                f'{body!r} を送ったときの応答が {response.json()!r} でした（{{"echo": <受け取った JSON>}} を期待）'
            )


def check_add_app(create_app: Callable[[], Any]) -> None:
    """Exercise 2: GET /add?a=..&b=.. answers {"sum": a + b}; a non-number gives 422."""
    app = create_app()
    with serve(app) as server:
        good = requests.get(server.url + "/add", params={"a": 2.5, "b": 4}, timeout=10)
        bad = requests.get(server.url + "/add", params={"a": "abc", "b": 1}, timeout=10)
    assert good.status_code == 200, f"/add のステータスが {good.status_code} です（200 を期待）"
    assert good.json() == {"sum": 6.5}, (
        f"/add?a=2.5&b=4 の応答が {good.json()} でした（{{'sum': 6.5}} を期待。a と b を float にしましたか？）"
    )
    assert bad.status_code == 422, (
        f"a=abc のとき 422 を期待しましたが {bad.status_code} でした（型ヒントを付けましたか？）"
    )


def _health_app(status: int, release: threading.Event | None = None) -> Flask:
    """A real server whose GET /health answers with this status; with release, it holds the request until set."""
    app = Flask(f"health_{status}")

    @app.get("/health")
    def health() -> tuple[dict[str, str], int]:
        """Answer with the configured status, after waiting for release when given."""
        if release is not None:
            release.wait(HANG_S)
        return {"status": "ok" if status == 200 else "failing"}, status

    return app


def _no_health_app() -> Flask:
    """A real server without /health: GET /health answers 404 (e.g. another service on that port)."""
    app = Flask("no_health")

    @app.get("/")
    def index() -> dict[str, str]:
        """Some other service's front page."""
        return {"service": "something else"}

    return app


@contextmanager
def _closed_port_url() -> Iterator[str]:
    """A URL on 127.0.0.1 whose port is bound but not listening: connecting is refused while we hold it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def _probe(is_healthy: Callable[[str], bool], url: str, situation: str) -> Any:
    """Call is_healthy(url) in a thread and wait at most PROBE_LIMIT_S; AssertionError if it hangs or raises."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        """Run the learner's probe and keep its result or its exception."""
        try:
            outcome["value"] = is_healthy(url)
        except BaseException as exc:  # noqa: BLE001 - the learner's exception is reported, not raised here
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="is_healthy", daemon=True)
    thread.start()
    thread.join(PROBE_LIMIT_S)
    assert not thread.is_alive(), (
        f"{situation}で is_healthy が {PROBE_LIMIT_S:.0f} 秒たっても返りませんでした。"
        "requests.get(..., timeout=2) のように数秒のタイムアウトを付けてください"
    )
    error = outcome.get("error")
    if isinstance(error, NotImplementedError):
        raise error
    assert error is None, (
        f"{situation}で例外 {type(error).__name__}: {error} が出ました。例外を出さずに False を返してください"
        "（requests.RequestException はタイムアウトも接続エラーも含みます）"
    )
    return outcome["value"]


def _expect(is_healthy: Callable[[str], bool], url: str, expected: bool, situation: str) -> None:
    """is_healthy(url) returns exactly the bool expected (not a response, a status code or None)."""
    value = _probe(is_healthy, url, situation)
    assert isinstance(value, bool), f"{situation}で {value!r} が返りました。True か False（bool）を返してください"
    hint = "GET {url}/health を呼んでいますか？" if expected else "GET {url}/health の 200 だけを健康とみなしてください"
    assert value is expected, f"{situation}で {value} が返りました（{expected} を期待。{hint}）"


def check_health_probe(is_healthy: Callable[[str], bool]) -> None:
    """Exercise 3: is_healthy(url) is True only for a 200 from /health; False for 404, 500, a hang and a closed port."""
    with serve(_health_app(200)) as server:
        _expect(is_healthy, server.url, True, "/health に 200 と答えるサーバー")
    with serve(_no_health_app()) as server:
        _expect(is_healthy, server.url, False, "/health が 404（そのパスがない）のサーバー")
    with serve(_health_app(500)) as server:
        _expect(is_healthy, server.url, False, "/health が 500（サーバー内部のエラー）のサーバー")
    with _closed_port_url() as url:
        _expect(is_healthy, url, False, "サーバーが動いていないポート")
    release = threading.Event()
    with serve(_health_app(200, release)) as server:
        try:
            _expect(is_healthy, server.url, False, "接続はできるが応答しないサーバー")
        finally:
            release.set()  # let the held request finish so the server stops at once
