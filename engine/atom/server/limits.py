"""What one client may ask of the server: body size, connection count, header and idle time, shutdown.

Every limit has a default and an `atom serve` flag; docs/security.md lists them.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass

from .responses import error_body

MAX_STOP_STRINGS = 16
MAX_STOP_CHARS = 256
MAX_STOP_TOKEN_IDS = 256
MAX_MESSAGES = 2048
MAX_TOOLS = 128  # OpenAI's own limit on tools per request


@dataclass(frozen=True)
class ServerLimits:
    max_body_bytes: int = 8 << 20  # a full 128k-token context as JSON fits well within this
    max_connections: int = 1024  # open sockets (uvicorn answers 503 past it)
    header_timeout_s: float = 10.0  # a new request's headers must arrive within this
    idle_timeout_s: float = 15.0  # a keep-alive socket with no request is closed after this
    shutdown_timeout_s: float = 30.0  # in-flight requests get this long after SIGTERM


class BodyLimit:
    """ASGI middleware: a body over the limit is a 413 before it is read in full.

    A declared Content-Length over the limit is refused without reading a byte; a chunked body is
    read only up to the limit. The body read so far is replayed to the app, then the real receive
    takes over (so a handler still sees the client's disconnect).
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            return await self._too_large(send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client left before sending its body
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._too_large(send)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send) -> None:
        message = f"the request body is over {self.max_bytes} bytes (--max-request-body-bytes)"
        await send_error(send, 413, message, "invalid_request_error", "request_too_large", close=True)


class BearerAuth:
    """ASGI middleware: /v1/ needs `Authorization: Bearer <key>`, compared in constant time.

    Pure ASGI on purpose: Starlette's @app.middleware("http") wraps every streamed chunk in a memory
    stream, which cost the most per token of anything on the SSE path."""

    def __init__(self, app, expected: bytes, on_refused: Callable[[], None]) -> None:
        self.app, self.expected, self.on_refused = app, expected, on_refused

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v1/"):
            sent = dict(scope["headers"]).get(b"authorization", b"")
            if not hmac.compare_digest(sent, self.expected):  # no timing oracle
                self.on_refused()  # one unlabelled counter: raw paths never make series
                message = "missing or wrong API key (send Authorization: Bearer <key>)"
                return await send_error(send, 401, message, "authentication_error", "invalid_api_key")
        await self.app(scope, receive, send)


async def send_error(send, status: int, message: str, kind: str, code, close: bool = False) -> None:
    """An OpenAI-style error body, sent from ASGI middleware (before any route runs)."""
    body = json.dumps(error_body(message, kind, code)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
