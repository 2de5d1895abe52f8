"""OpenAI-compatible HTTP server: /v1/completions, /v1/chat/completions, /v1/models, /health, /metrics."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import generate_latest
from starlette.exceptions import HTTPException

from ..config import EngineConfig
from ..errors import InvalidRequestError
from ..output import RequestOutput
from . import responses
from .engine_client import EngineClient, EngineUnavailable, QueueFullError, RequestFailed, ShuttingDown
from .limits import BearerAuth, BodyLimit, ServerLimits
from .metrics import Metrics
from .protocol import ChatCompletionRequest, CompletionRequest
from .responses import error


class State:
    def __init__(self) -> None:
        self.engine: EngineClient | None = None
        self.model_name = ""
        self.loop: asyncio.AbstractEventLoop | None = None

    def shutdown_deadline_in(self, seconds: float) -> None:
        """Called from the signal handler: at the deadline, in-flight requests are answered 503."""
        if self.loop:
            self.loop.call_soon_threadsafe(self.loop.call_later, max(seconds, 0.0), self._deadline)

    def _deadline(self) -> None:
        if self.engine:
            self.engine.fail_all(ShuttingDown("the server is shutting down; retry"))


def route_of(request: Request) -> str | None:
    """The route template (/v1/models/{model_id}), never the raw path: metric labels stay bounded."""
    return getattr(request.scope.get("route"), "path", None)


def create_app(
    config: EngineConfig,
    api_key: str | None = None,
    max_queued_requests: int = 256,
    served_model_name: str | None = None,
    limits: ServerLimits | None = None,
    on_failure: Callable[[str], None] | None = None,
) -> FastAPI:
    """on_failure(error) is called if the model cannot be loaded or the engine core dies (`atom serve`
    then exits non-zero instead of answering 503 forever)."""
    limits = limits or ServerLimits()
    state, metrics = State(), Metrics()
    state.model_name = served_model_name or config.model.rstrip("/").split("/")[-1]
    # tokenization and chat templating run here, never on the event loop
    tokenizer_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="atom-tokenize")
    expected_auth = f"Bearer {api_key}".encode() if api_key else None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state.loop = asyncio.get_running_loop()
        # the core loads and warms up in its own process; /health stays 503 until it is ready
        state.engine = EngineClient(config, max_queued_requests, on_failure)
        starting = asyncio.create_task(state.engine.start())
        yield
        starting.cancel()
        tokenizer_pool.shutdown(wait=False, cancel_futures=True)
        await state.engine.shutdown()

    app = FastAPI(title="atom", version="0.1.0", lifespan=lifespan)
    app.state.atom = state
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)

    def not_ready() -> JSONResponse:
        if state.engine and state.engine.error:
            return error(
                503, f"the engine is not available: {state.engine.error}", kind="service_unavailable"
            )
        return error(503, "the model is still loading", kind="service_unavailable")

    def ready_engine() -> EngineClient | None:
        return state.engine if state.engine and state.engine.ready else None

    def count(request: Request, status: int | str) -> None:
        route = route_of(request)
        if route:
            metrics.requests.labels(route, str(status)).inc()

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            message = f"the body is not valid JSON ({first.get('ctx', {}).get('error', 'decode error')})"
        count(request, 400)
        return error(400, f"{where or 'body'}: {message}", param=where or None)

    @app.exception_handler(HTTPException)
    async def on_http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 400:  # FastAPI's "error parsing the body": bad UTF-8, wrong encoding
            count(request, 400)
            return error(400, "the body could not be decoded: send UTF-8 JSON")
        kind = {404: "not_found_error", 405: "invalid_request_error"}.get(exc.status_code, "server_error")
        return error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}", kind=kind)

    if expected_auth:
        app.add_middleware(BearerAuth, expected=expected_auth, on_refused=metrics.unauthorized.inc)

    @app.get("/health")
    async def health() -> JSONResponse:
        if state.engine and state.engine.error:
            return JSONResponse({"status": "failed", "error": state.engine.error}, status_code=503)
        if not ready_engine():
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        if ready_engine():
            metrics.observe_stats(state.engine.stats)
        return PlainTextResponse(
            generate_latest(metrics.registry).decode(), media_type="text/plain; version=0.0.4"
        )

    def model_card() -> dict:
        return {
            "id": state.model_name,
            "object": "model",
            "owned_by": "atom",
            "max_model_len": state.engine.info.max_model_len if ready_engine() else None,
        }

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        if model_id != state.model_name:
            return error(
                404,
                f"model {model_id[:200]!r} is not served here; this server has {state.model_name!r}",
                kind="not_found_error",
            )
        return model_card()

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        return await serve(request, body, body.prompts(), "text_completion", body.logprobs, body.max_tokens)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatCompletionRequest, request: Request):
        engine = ready_engine()
        if engine is None:
            return not_ready()
        messages = [m.for_template() for m in body.messages]
        try:
            prompt = await off_loop(engine.tokenizer.apply_chat_template, messages)
        except InvalidRequestError as e:
            count(request, 400)
            return error(400, str(e))
        logprobs = (body.top_logprobs or 0) if body.logprobs else None
        return await serve(
            request,
            body,
            [prompt],
            "chat.completion",
            logprobs,
            body.max_completion_tokens or body.max_tokens,
        )

    async def off_loop(fn, *args):
        return await asyncio.get_running_loop().run_in_executor(tokenizer_pool, fn, *args)

    def encode_all(tokenizer, prompts: list) -> list[list[int]]:
        return [tokenizer.encode(p) if isinstance(p, str) else p for p in prompts]

    async def serve(
        request: Request, body, prompts: list, kind: str, logprobs: int | None, max_tokens: int | None
    ):
        engine = ready_engine()
        if engine is None:
            return not_ready()
        rid = f"{'chatcmpl' if kind == 'chat.completion' else 'cmpl'}-{uuid.uuid4().hex}"
        try:
            params = [body.sampling_params(max_tokens, logprobs, i) for i in range(body.n)]
            prompt_ids = await off_loop(encode_all, engine.tokenizer, prompts)
            engine.admit(prompt_ids, params[0], len(params))
        except InvalidRequestError as e:
            count(request, 400)
            return error(400, str(e))
        except QueueFullError as e:
            count(request, 429)
            return error(429, str(e), kind="rate_limit_error", headers={"Retry-After": "1"})
        except EngineUnavailable:
            return not_ready()
        streams = [
            engine.generate(ids, p, f"{rid}-{k * len(params) + j}")
            for k, ids in enumerate(prompt_ids)
            for j, p in enumerate(params)
        ]
        prompt_tokens = sum(len(ids) for ids in prompt_ids)
        start = time.monotonic()
        if body.stream:
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return StreamingResponse(
                sse(request, rid, kind, streams, prompt_tokens, include_usage, start),
                media_type="text/event-stream",
            )
        return await respond(request, rid, kind, streams, prompt_tokens, start)

    async def respond(request: Request, rid, kind, streams, prompt_tokens: int, start: float):
        work = asyncio.ensure_future(asyncio.gather(*(collect(s, start) for s in streams)))
        gone = asyncio.ensure_future(client_gone(request))
        await asyncio.wait((work, gone), return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if not work.done():  # cancelling closes each stream, which aborts its request
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)  # retrieved: no "never retrieved" log
            count(request, 499)
            return error(499, "the client disconnected", kind="client_closed_request")
        try:
            finals = work.result()
        except InvalidRequestError as e:
            count(request, 400)
            return error(400, str(e))
        except ShuttingDown as e:
            count(request, 503)
            return error(503, str(e), kind="service_unavailable")
        except EngineUnavailable:
            count(request, 503)
            return not_ready()
        except RequestFailed as e:
            count(request, 500)
            return error(500, str(e), kind="server_error")
        count(request, 200)
        return responses.full_response(rid, kind, state.model_name, finals, prompt_tokens)

    async def client_gone(request: Request) -> None:
        """Returns when the client disconnects: the body is read, so receive() has nothing else to say."""
        while (await request.receive())["type"] != "http.disconnect":
            pass

    async def collect(stream: AsyncIterator[RequestOutput], start: float) -> RequestOutput:
        last, first_at, n = None, None, 0
        async for out in stream:
            first_at = first_at or time.monotonic()
            last, n = out, n + 1
        observe(start, first_at, n)
        return last

    def observe(start: float, first_at: float | None, n: int) -> None:
        now = time.monotonic()
        if first_at:
            metrics.ttft.observe(first_at - start)
            if n > 1:
                metrics.tpot.observe((now - first_at) / (n - 1))
        metrics.e2e.observe(now - start)

    async def sse(request, rid, kind, streams, prompt_len, include_usage, start) -> AsyncIterator[str]:
        chunk_kind = "chat.completion.chunk" if kind == "chat.completion" else "text_completion"
        model = state.model_name
        items = one_stream(streams[0], start) if len(streams) == 1 else many_streams(streams, start)
        completion_tokens, finished = 0, False
        try:
            if kind == "chat.completion":
                for i in range(len(streams)):
                    delta = {"role": "assistant", "content": ""}
                    yield responses.event(
                        rid, chunk_kind, model, [{"index": i, "delta": delta, "finish_reason": None}]
                    )
            async for i, out in items:
                if isinstance(out, ShuttingDown):  # the deadline: say so, then end the stream properly
                    yield responses.error_event(str(out), "service_unavailable", 503)
                    yield responses.DONE
                    count(request, 503)
                    finished = True
                    return
                if isinstance(out, Exception):
                    yield responses.error_event(str(out))
                    continue
                completion_tokens += len(out.delta_token_ids)
                choice = {"index": i, "finish_reason": out.finish_reason}
                if kind == "chat.completion":
                    choice["delta"] = {"content": out.delta_text} if out.delta_text else {}
                else:
                    choice["text"] = out.delta_text
                yield responses.event(rid, chunk_kind, model, [choice])
            if include_usage:
                yield responses.event(
                    rid, chunk_kind, model, [], responses.usage(prompt_len, completion_tokens)
                )
            yield responses.DONE
            count(request, 200)
            finished = True
        finally:
            if not finished:
                count(request, 499)  # the client went away mid-stream
            await items.aclose()  # closes each generate() stream, which aborts its request

    async def one_stream(stream, start: float) -> AsyncIterator[tuple[int, object]]:
        """The common case (n = 1): read the stream only when the last event is written, so outputs
        that arrive meanwhile are merged into one event (OutputStream), not queued."""
        first_at, n = None, 0
        try:
            async for out in stream:
                first_at = first_at or time.monotonic()
                n += 1
                yield 0, out
        except Exception as e:
            yield 0, e
        finally:
            observe(start, first_at, n)
            await stream.aclose()

    async def many_streams(streams, start: float) -> AsyncIterator[tuple[int, object]]:
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(i: int, stream) -> None:
            async for _, out in one_stream(stream, start):
                await queue.put((i, out))
            await queue.put((i, None))

        tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
        try:
            done = 0
            while done < len(streams):
                i, out = await queue.get()
                if out is None:
                    done += 1
                else:
                    yield i, out
        finally:
            for t in tasks:  # pumps catch every error, so a cancelled one leaves nothing unretrieved
                t.cancel()

    return app
