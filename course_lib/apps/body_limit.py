"""ASGI middleware shared by the FastAPI apps: a 413 JSON answer for a request body over a size limit."""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DRAIN_LIMIT = 64 * 1024 * 1024  # read (and discard) at most this much of an oversized body before answering


class BodySizeLimit:
    """Answer 413 JSON when a request body is larger than max_bytes, declared (Content-Length) or streamed.

    The answer is {key: message}, with message formatted with {limit}, so each app keeps its own error shape.
    An oversized body is read and discarded up to DRAIN_LIMIT first, so a client still sending it reads the 413.
    """

    def __init__(
        self,
        app: ASGIApp,
        max_bytes: int,
        key: str = "detail",
        message: str = "request body too large (limit: {limit} bytes)",
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.key = key
        self.message = message

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Buffer the body up to the limit, then pass it on, or answer 413 (400 for a malformed Content-Length)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and not declared.isdigit():
            await self._error(400, "invalid Content-Length header", scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more and size <= DRAIN_LIMIT:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size <= self.max_bytes:
                chunks.append(body)
            more = message.get("more_body", False)
        if size > self.max_bytes:
            await self._error(413, self.message.format(limit=self.max_bytes), scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _error(self, status: int, message: str, scope: Scope, receive: Receive, send: Send) -> None:
        """Send {key: message} with this status."""
        await JSONResponse({self.key: message}, status_code=status)(scope, receive, send)
