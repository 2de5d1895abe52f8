"""What the route handlers share: the engine client, metrics, the model's public name, the tokenizer
threads. One per app (app.state.atom); handlers reach it through `server_state(request)`."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from fastapi import Request
from fastapi.responses import JSONResponse

from .engine_client import EngineClient, ShuttingDown
from .metrics import Metrics
from .responses import error


class ServerState:
    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.created = int(time.time())  # the model objects' `created`: when this server started
        self.engine: EngineClient | None = None
        self.metrics = Metrics()
        # tokenization and chat templating run here, never on the event loop
        self.tokenizer_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="atom-tokenize")
        self.loop: asyncio.AbstractEventLoop | None = None

    def ready_engine(self) -> EngineClient | None:
        return self.engine if self.engine and self.engine.ready else None

    def not_ready(self) -> JSONResponse:
        if self.engine and self.engine.error:
            message = f"the engine is not available: {self.engine.error}"
            return error(503, message, kind="service_unavailable")
        return error(503, "the model is still loading", kind="service_unavailable")

    def count(self, request: Request, status: int | str) -> None:
        """Requests by route template (/v1/models/{model_id}), never by raw path: bounded series."""
        route = getattr(request.scope.get("route"), "path", None)
        if route:
            self.metrics.requests.labels(route, str(status)).inc()

    async def off_loop(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.tokenizer_pool, fn, *args)

    def shutdown_deadline_in(self, seconds: float) -> None:
        """Called from the signal handler: at the deadline, in-flight requests are answered 503."""
        if self.loop:
            self.loop.call_soon_threadsafe(self.loop.call_later, max(seconds, 0.0), self._deadline)

    def _deadline(self) -> None:
        if self.engine:
            self.engine.fail_all(ShuttingDown("the server is shutting down; retry"))


def server_state(request: Request) -> ServerState:
    return request.app.state.atom
