"""OpenAI-compatible HTTP server: /v1/completions, /v1/chat/completions, /v1/models, /health, /metrics.

The app wires things together: the engine client (the core in its own process), limits and auth as
ASGI middleware, OpenAI-shaped errors, and one router per endpoint family (routes/).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ..config import EngineConfig
from .engine_client import EngineClient
from .limits import BearerAuth, BodyLimit, ServerLimits
from .responses import error
from .routes import chat, completions, models, ops
from .scaling import ReplicaConfig
from .state import ServerState


def create_app(
    config: EngineConfig,
    api_key: str | None = None,
    max_queued_requests: int = 256,
    served_model_name: str | None = None,
    limits: ServerLimits | None = None,
    on_failure: Callable[[str], None] | None = None,
    replicas: ReplicaConfig | None = None,
) -> FastAPI:
    """on_failure(error) is called if the model cannot be loaded or the engine core dies (`atom serve`
    then exits non-zero instead of answering 503 forever); with several replicas (data parallelism, on
    this host or on Ray), when the last one is gone."""
    limits = limits or ServerLimits()
    state = ServerState(served_model_name or config.model.rstrip("/").split("/")[-1])

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.loop = asyncio.get_running_loop()
        # the core loads and warms up in its own process; /health stays 503 until it is ready
        state.engine = EngineClient(config, max_queued_requests, on_failure, replicas)
        starting = asyncio.create_task(state.engine.start())
        yield
        starting.cancel()
        state.tokenizer_pool.shutdown(wait=False, cancel_futures=True)
        await state.engine.shutdown()

    app = FastAPI(title="atom", version="0.1.0", lifespan=lifespan)
    app.state.atom = state
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    if api_key:  # added last: outermost, so a refused request's body is never read
        expected = f"Bearer {api_key}".encode()
        app.add_middleware(BearerAuth, expected=expected, on_refused=state.metrics.unauthorized.inc)
    _add_error_handlers(app, state)
    for family in (completions, chat, models, ops):
        app.include_router(family.router)
    return app


def _add_error_handlers(app: FastAPI, state: ServerState) -> None:
    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = first.get("msg", "invalid request").removeprefix("Value error, ")
        if first.get("type") == "extra_forbidden":
            message = "unknown field: this server does not take it (docs/server.md lists every field)"
        if first.get("type") == "json_invalid":
            message = f"the body is not valid JSON ({first.get('ctx', {}).get('error', 'decode error')})"
        state.count(request, 400)
        return error(400, f"{where or 'body'}: {message}", param=where or None)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body": bad UTF-8, wrong encoding
            state.count(request, 400)
            return error(400, "the body could not be decoded: send UTF-8 JSON")
        kind = {404: "not_found_error", 405: "invalid_request_error"}.get(exc.status_code, "server_error")
        return error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", kind=kind)
