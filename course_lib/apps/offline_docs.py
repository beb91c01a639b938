"""Keep the API docs local: a Content-Security-Policy that lets /docs and /redoc load only from this server.

fastapi-offline serves Swagger UI and ReDoc from its wheel, but ReDoc's bundle still shows a sidebar logo from
cdn.redoc.ly. With this policy the browser never sends that request (the logo hides itself on error), and any
other attempt to reach another host is blocked too.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["DOCS_CSP", "LocalOnlyDocs"]

DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'"
)


class LocalOnlyDocs:
    """ASGI middleware: add DOCS_CSP to the responses of the documentation pages."""

    def __init__(self, app: ASGIApp, paths: tuple[str, ...] = ("/docs", "/redoc")) -> None:
        self.app = app
        self.paths = paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the header when the path is a documentation page."""
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return

        async def send_with_csp(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message["headers"], (b"content-security-policy", DOCS_CSP.encode())]}
            await send(message)

        await self.app(scope, receive, send_with_csp)
