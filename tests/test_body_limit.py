"""BodySizeLimit (course_lib.apps.body_limit) around a small echo app, over real HTTP and at the ASGI level.

The echo app answers the size and hash of the body it received, so a test sees whether the body reached the app
intact, or not at all. A recorder around the middleware notes when each request enters and how it leaves it
(returned or raised), so the tests wait on that instead of sleeping.
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import socket
from contextlib import asynccontextmanager

import httpx
import pytest
import requests
from fastapi import FastAPI, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from course_lib.apps.body_limit import BodySizeLimit
from course_lib.servers import serve

LIMIT = 100
MESSAGE = "body over {limit} bytes"


class Recorder:
    """Outermost ASGI layer: queues ("entered", path) and ("returned" | "raised …", path) for each HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.events: queue.Queue[tuple[str, str]] = queue.Queue()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.events.put(("entered", scope["path"]))
        try:
            await self.app(scope, receive, send)
        except BaseException as exc:
            self.events.put((f"raised {exc!r}", scope["path"]))
            raise
        self.events.put(("returned", scope["path"]))

    def next(self) -> tuple[str, str]:
        """The next recorded event (fails after 30 s)."""
        return self.events.get(timeout=30)


def echo_app(calls: list[bytes], started: list[bool]) -> FastAPI:
    """POST /echo → the size and SHA-256 of the body the app received (each body is also kept in calls)."""

    @asynccontextmanager
    async def lifespan(app):
        started.append(True)
        yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/echo")
    async def echo(request: Request) -> dict:
        body = await request.body()
        calls.append(body)
        return {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}

    return app


@pytest.fixture
def limited():
    """A running echo app behind BodySizeLimit(max_bytes=LIMIT, key="error"), with its recorder and calls."""
    calls: list[bytes] = []
    started: list[bool] = []
    recorder = Recorder(BodySizeLimit(echo_app(calls, started), max_bytes=LIMIT, key="error", message=MESSAGE))
    with serve(recorder) as server:
        yield server, recorder, calls, started


def echoed(body: bytes) -> dict:
    """The echo app's answer for this body."""
    return {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def assert_still_serves(server, calls: list[bytes]) -> None:
    """A good request after a failure reaches the app and is answered."""
    before = len(calls)
    response = requests.post(server.url + "/echo", data=b"ok", timeout=30)
    assert response.status_code == 200 and response.json() == echoed(b"ok")
    assert len(calls) == before + 1


def test_the_lifespan_passes_through_the_middleware(limited):
    server, recorder, calls, started = limited
    assert started == [True]


@pytest.mark.parametrize("size", [0, 1, LIMIT - 1, LIMIT])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_up_to_the_limit_reaches_the_app_intact(limited, size, chunked):
    server, recorder, calls, started = limited
    body = bytes(range(256))[:size] if size <= 256 else b"x" * size
    data = iter([body[: size // 2], body[size // 2 :]]) if chunked else body
    response = requests.post(server.url + "/echo", data=data, timeout=30)
    assert ("content-length" in response.request.headers) is not chunked
    assert response.status_code == 200 and response.json() == echoed(body)
    assert calls == [body]


@pytest.mark.parametrize("size", [LIMIT + 1, 10 * LIMIT, 1_000_000])
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_body_over_the_limit_gets_413_json_and_never_reaches_the_app(limited, size, chunked):
    server, recorder, calls, started = limited
    body = b"y" * size
    data = iter([body[i : i + 4096] for i in range(0, size, 4096)]) if chunked else body
    response = requests.post(server.url + "/echo", data=data, timeout=30)  # the whole body is sent, then read
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"error": f"body over {LIMIT} bytes"}
    assert calls == []
    assert_still_serves(server, calls)


@pytest.mark.parametrize("value", [b"abc", b"-5", b"+5", b"1e3", b"0x10", b""])
def test_an_invalid_content_length_over_http_is_a_400_and_the_server_keeps_serving(limited, value):
    """uvicorn's HTTP parser refuses these before any app runs: a plain-text 400, not a 500."""
    server, recorder, calls, started = limited
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: " + value + b"\r\n\r\nhello"
        )
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert recorder.events.empty() and calls == []
    assert_still_serves(server, calls)


@pytest.mark.parametrize("value", [b"abc", b"-5", b"+5", b"1e3", b"0x10", b"", b" 5", b"5 5", "٥".encode()])
def test_an_invalid_content_length_that_reaches_the_middleware_gets_400_json(value):
    """Servers that pass the header through (called here in-process over ASGI) get the middleware's own 400."""
    calls: list[bytes] = []
    app = BodySizeLimit(echo_app(calls, []), max_bytes=LIMIT)

    async def post() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.post("/echo", content=b"hello", headers={"Content-Length": value})

    response = asyncio.run(post())
    assert [v for k, v in response.request.headers.raw if k.lower() == b"content-length"] == [value]  # as written
    assert response.status_code == 400
    assert response.json() == {"detail": "invalid Content-Length header"}
    assert calls == []


@pytest.mark.parametrize("declared", [LIMIT, 10 * LIMIT], ids=["within the limit", "over the limit"])
def test_a_client_that_disconnects_mid_body_ends_its_request_quietly(limited, capfd, declared):
    server, recorder, calls, started = limited
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % declared
            + b"z" * (LIMIT // 2)
            + (b"z" * LIMIT if declared > LIMIT else b"")
        )
        assert recorder.next() == ("entered", "/echo")  # the middleware is reading the body
    assert recorder.next() == ("returned", "/echo")  # no exception, no hang once the client is gone
    assert calls == []  # a partial body never reaches the app
    assert_still_serves(server, calls)
    log = capfd.readouterr().err
    assert "Traceback" not in log and "Exception" not in log and "ERROR" not in log, log


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)
