"""OpenAI-compatible HTTP server: /v1/completions, /v1/chat/completions, /v1/models, /health, /metrics."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from prometheus_client import generate_latest

from ..config import EngineConfig
from ..engine.llm_engine import LLMEngine, RequestOutput
from ..errors import InvalidRequestError
from .async_engine import AsyncEngine, QueueFullError
from .metrics import Metrics
from .protocol import ChatCompletionRequest, CompletionRequest


def error(
    status: int,
    message: str,
    kind: str = "invalid_request_error",
    param: str | None = None,
    headers: dict | None = None,
) -> JSONResponse:
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


class State:
    def __init__(self) -> None:
        self.engine: AsyncEngine | None = None
        self.load_error: str | None = None
        self.model_name = ""


def create_app(
    config: EngineConfig,
    api_key: str | None = None,
    max_queued_requests: int = 256,
    served_model_name: str | None = None,
) -> FastAPI:
    state, metrics = State(), Metrics()
    state.model_name = served_model_name or config.model.rstrip("/").split("/")[-1]

    def load() -> None:
        try:
            engine = LLMEngine(config)
            engine.warm_up()  # /health stays 503 until this is done
            state.engine = AsyncEngine(engine, max_queued_requests)
        except Exception as e:  # reported by /health
            state.load_error = f"{e.__class__.__name__}: {e}"

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=load, name="atom-load", daemon=True).start()
        yield
        if state.engine:
            state.engine.shutdown()

    app = FastAPI(title="atom", version="0.1.0", lifespan=lifespan)
    app.state.atom = state

    @app.exception_handler(RequestValidationError)
    async def on_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        metrics.requests.labels(request.url.path, "400").inc()
        return error(400, f"{where or 'body'}: {first.get('msg', 'invalid request')}", param=where or None)

    @app.middleware("http")
    async def authenticate(request: Request, call_next):
        if api_key and request.url.path.startswith("/v1/"):
            if request.headers.get("authorization", "") != f"Bearer {api_key}":
                metrics.requests.labels(request.url.path, "401").inc()
                return error(
                    401,
                    "missing or wrong API key (send Authorization: Bearer <key>)",
                    kind="authentication_error",
                )
        return await call_next(request)

    @app.get("/health")
    async def health() -> JSONResponse:
        if state.load_error:
            return JSONResponse({"status": "failed", "error": state.load_error}, status_code=503)
        if state.engine is None:
            return JSONResponse({"status": "loading"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def prometheus() -> PlainTextResponse:
        if state.engine:
            metrics.observe_engine(state.engine.engine)
        return PlainTextResponse(
            generate_latest(metrics.registry).decode(), media_type="text/plain; version=0.0.4"
        )

    def model_card() -> dict:
        return {
            "id": state.model_name,
            "object": "model",
            "owned_by": "atom",
            "max_model_len": state.engine.engine.max_model_len if state.engine else None,
        }

    @app.get("/v1/models")
    async def models() -> dict:
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        if model_id != state.model_name:
            return error(404, f"model {model_id!r} is not served here; this server has {state.model_name!r}")
        return model_card()

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request):
        return await serve(request, body, body.prompts(), "text_completion", body.logprobs, body.max_tokens)

    @app.post("/v1/chat/completions")
    async def chat(body: ChatCompletionRequest, request: Request):
        engine = state.engine
        if engine is None:
            return error(503, "the model is still loading", kind="service_unavailable")
        try:
            prompt = engine.engine.tokenizer.apply_chat_template([m.for_template() for m in body.messages])
        except InvalidRequestError as e:
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

    async def serve(
        request: Request, body, prompts: list, kind: str, logprobs: int | None, max_tokens: int | None
    ):
        engine = state.engine
        path = request.url.path
        if engine is None:
            return error(503, "the model is still loading", kind="service_unavailable")
        rid = f"{'chatcmpl' if kind == 'chat.completion' else 'cmpl'}-{uuid.uuid4().hex}"
        try:
            params = [body.sampling_params(max_tokens, logprobs, i) for i in range(body.n)]
            prompt_ids = [engine.engine.tokenizer.encode(p) if isinstance(p, str) else p for p in prompts]
            engine.admit(prompt_ids, params[0], len(params))
        except InvalidRequestError as e:
            metrics.requests.labels(path, "400").inc()
            return error(400, str(e))
        except QueueFullError as e:
            metrics.requests.labels(path, "429").inc()
            return error(429, str(e), kind="rate_limit_error", headers={"Retry-After": "1"})
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
                sse(rid, kind, streams, prompt_tokens, include_usage, start, path),
                media_type="text/event-stream",
            )
        work = asyncio.ensure_future(asyncio.gather(*(collect(s, start) for s in streams)))
        gone = asyncio.ensure_future(client_gone(request))
        await asyncio.wait((work, gone), return_when=asyncio.FIRST_COMPLETED)
        gone.cancel()
        if not work.done():  # nobody to answer: cancelling closes each stream, which aborts its request
            work.cancel()
            metrics.requests.labels(path, "499").inc()
            return error(499, "the client disconnected", kind="client_closed_request")
        try:
            finals = work.result()
        except InvalidRequestError as e:
            metrics.requests.labels(path, "400").inc()
            return error(400, str(e))
        metrics.requests.labels(path, "200").inc()
        return full_response(rid, kind, finals, prompt_tokens)

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

    def full_response(rid: str, kind: str, finals: list[RequestOutput], prompt_len: int) -> dict:
        choices = []
        for i, out in enumerate(finals):
            choice = {"index": i, "finish_reason": out.finish_reason}
            if kind == "chat.completion":
                choice["message"] = {"role": "assistant", "content": out.text}
                choice["logprobs"] = chat_logprobs(out.logprobs) if out.logprobs else None
            else:
                choice["text"] = out.text
                choice["logprobs"] = completion_logprobs(out.logprobs) if out.logprobs else None
            choices.append(choice)
        completion_tokens = sum(len(o.output_token_ids) for o in finals)
        return {
            "id": rid,
            "object": kind,
            "created": int(time.time()),
            "model": state.model_name,
            "choices": choices,
            "usage": usage(prompt_len, completion_tokens),
        }

    def token_str(token_id: int) -> str:
        return state.engine.engine.tokenizer.decode([token_id])

    def chat_logprobs(entries: list[dict]) -> dict:
        return {
            "content": [
                {
                    "token": token_str(e["token_id"]),
                    "logprob": e["logprob"],
                    "top_logprobs": [{"token": token_str(t), "logprob": lp} for t, lp in e["top"]],
                }
                for e in entries
            ]
        }

    def completion_logprobs(entries: list[dict]) -> dict:
        return {
            "tokens": [token_str(e["token_id"]) for e in entries],
            "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [{token_str(t): lp for t, lp in e["top"]} for e in entries],
        }

    async def sse(rid, kind, streams, prompt_len, include_usage, start, path) -> AsyncIterator[str]:
        chunk_kind = "chat.completion.chunk" if kind == "chat.completion" else "text_completion"
        queue: asyncio.Queue = asyncio.Queue()

        async def pump(i: int, stream) -> None:
            first_at, n = None, 0
            try:
                async for out in stream:
                    first_at = first_at or time.monotonic()
                    n += 1
                    await queue.put((i, out))
            except Exception as e:
                await queue.put((i, e))
            finally:
                observe(start, first_at, n)
                await queue.put((i, None))

        tasks = [asyncio.create_task(pump(i, s)) for i, s in enumerate(streams)]
        completion_tokens, done = 0, 0
        try:
            if kind == "chat.completion":
                for i in range(len(streams)):
                    yield event(
                        rid,
                        chunk_kind,
                        [{"index": i, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}],
                    )
            while done < len(streams):
                i, out = await queue.get()
                if out is None:
                    done += 1
                    continue
                if isinstance(out, Exception):
                    yield f"data: {json.dumps({'error': {'message': str(out), 'type': 'server_error'}})}\n\n"
                    continue
                completion_tokens += len(out.delta_token_ids)
                choice = {"index": i, "finish_reason": out.finish_reason}
                if kind == "chat.completion":
                    choice["delta"] = {"content": out.delta_text} if out.delta_text else {}
                else:
                    choice["text"] = out.delta_text
                yield event(rid, chunk_kind, [choice])
            if include_usage:
                yield event(rid, chunk_kind, [], usage(prompt_len, completion_tokens))
            yield "data: [DONE]\n\n"
            metrics.requests.labels(path, "200").inc()
        finally:
            for t in tasks:
                t.cancel()  # cancelling closes each generate() stream, which aborts its request

    def event(rid: str, kind: str, choices: list, usage_: dict | None = None) -> str:
        body = {
            "id": rid,
            "object": kind,
            "created": int(time.time()),
            "model": state.model_name,
            "choices": choices,
        }
        if usage_ is not None:
            body["usage"] = usage_
        return f"data: {json.dumps(body)}\n\n"

    def usage(prompt_tokens: int, completion_tokens: int) -> dict:
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }

    return app
