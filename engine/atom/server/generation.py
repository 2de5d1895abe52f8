"""The generation path both endpoints share: admit a request, start its engine streams, and answer with
one JSON body or a server-sent-event stream. Routing lives in routes/, body shapes in responses.py."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import StreamingResponse

from ..errors import InvalidRequestError
from ..output import RequestOutput
from . import responses
from .engine_client import EngineUnavailable, QueueFullError, RequestFailed, ShuttingDown
from .responses import error
from .state import ServerState


@dataclass
class Reply:
    """What every body or event of one answer carries."""

    rid: str
    kind: str  # chat.completion | text_completion
    model: str
    fingerprint: str
    prompt_tokens: int
    start: float
    include_usage: bool = False
    continuous_usage: bool = False  # usage in every chunk (vLLM's stream_options extension)
    parser: Callable | None = None  # chat: makes one choice's output parser (reasoning, tool calls)

    @property
    def chat(self) -> bool:
        return self.kind == "chat.completion"

    @property
    def chunk_kind(self) -> str:
        return "chat.completion.chunk" if self.chat else "text_completion"

    def new_parser(self):
        """A fresh chat output parser for one choice; None: the answer is plain text."""
        return self.parser() if self.parser else None

    def event(self, choices: list, usage: dict | None = None) -> str:
        return responses.event(self.rid, self.chunk_kind, self.model, self.fingerprint, choices, usage)


def encode_all(tokenizer, prompts: list) -> list[list[int]]:
    return [tokenizer.encode(p) if isinstance(p, str) else p for p in prompts]


async def serve(
    state: ServerState,
    request: Request,
    body,
    prompts: list,
    kind: str,
    logprobs: int | None,
    max_tokens: int | None,
    grammar: str | None = None,
    parser: Callable | None = None,
):
    """Validate, admit, start one engine stream per (prompt, choice); answer as JSON or SSE.
    grammar: the caller's constraint (a required tool call); parser: chat output parsing per choice."""
    count = state.count
    engine = state.ready_engine()
    if engine is None:
        return state.not_ready()
    rid = f"{'chatcmpl' if kind == 'chat.completion' else 'cmpl'}-{uuid.uuid4().hex}"
    try:
        params = [body.sampling_params(max_tokens, logprobs, i, grammar) for i in range(body.n)]
        prompt_ids = await state.off_loop(encode_all, engine.tokenizer, prompts)
        engine.admit(prompt_ids, params[0], len(params))
    except InvalidRequestError as e:
        count(request, 400)
        return error(400, str(e))
    except QueueFullError as e:
        count(request, 429)
        return error(429, str(e), kind="rate_limit_error", headers={"Retry-After": "1"})
    except EngineUnavailable:
        return state.not_ready()
    streams = [
        engine.generate(ids, p, f"{rid}-{k * len(params) + j}")
        for k, ids in enumerate(prompt_ids)
        for j, p in enumerate(params)
    ]
    options = body.stream_options
    reply = Reply(
        rid,
        kind,
        state.model_name,
        engine.info.fingerprint,
        sum(len(ids) for ids in prompt_ids),
        time.monotonic(),
        include_usage=bool(options and options.include_usage),
        continuous_usage=bool(options and options.continuous_usage_stats),
        parser=parser,
    )
    if body.stream:
        return StreamingResponse(sse(state, request, reply, streams), media_type="text/event-stream")
    return await respond(state, request, reply, streams)


async def respond(state: ServerState, request: Request, reply: Reply, streams):
    count = state.count
    work = asyncio.ensure_future(asyncio.gather(*(collect(state, s, reply.start) for s in streams)))
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
    except EngineUnavailable as e:
        count(request, 503)
        if state.engine.ready:  # one replica of several went: the others serve, a retry will work
            return error(503, str(e), kind="service_unavailable", headers={"Retry-After": "1"})
        return state.not_ready()
    except RequestFailed as e:
        count(request, 500)
        return error(500, str(e), kind="server_error")
    count(request, 200)
    parsed = [responses.parse_whole(reply.new_parser(), out) for out in finals] if reply.chat else None
    return responses.full_response(
        reply.rid, reply.kind, reply.model, finals, reply.prompt_tokens, reply.fingerprint, parsed
    )


async def client_gone(request: Request) -> None:
    """Returns when the client disconnects: the body is read, so receive() has nothing else to say."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def collect(state: ServerState, stream: AsyncIterator[RequestOutput], start: float) -> RequestOutput:
    last, first_at, n = None, None, 0
    async for out in stream:
        first_at = first_at or time.monotonic()
        last, n = out, n + 1
    observe(state, start, first_at, n)
    return last


def observe(state: ServerState, start: float, first_at: float | None, n: int) -> None:
    metrics, now = state.metrics, time.monotonic()
    if first_at:
        metrics.ttft.observe(first_at - start)
        if n > 1:
            metrics.tpot.observe((now - first_at) / (n - 1))
    metrics.e2e.observe(now - start)


async def sse(state: ServerState, request, reply: Reply, streams) -> AsyncIterator[str]:
    count = state.count
    items = (
        one_stream(state, streams[0], reply.start)
        if len(streams) == 1
        else many_streams(state, streams, reply.start)
    )
    completion_tokens, finished = 0, False
    offsets = [0] * len(streams)  # completions' text_offset: characters each choice has streamed
    parsed = [responses.StreamedChoice(reply.new_parser()) for _ in streams] if reply.chat else None

    def usage() -> dict:
        return responses.usage(reply.prompt_tokens, completion_tokens)

    try:
        if reply.chat:
            for i in range(len(streams)):
                delta = {"role": "assistant", "content": ""}
                choices = [{"index": i, "delta": delta, "logprobs": None, "finish_reason": None}]
                yield reply.event(choices, usage() if reply.continuous_usage else None)
        async for i, out in items:
            if isinstance(out, ShuttingDown):  # the deadline: say so, then end the stream properly
                yield responses.error_event(str(out), "service_unavailable")
                yield responses.DONE
                count(request, 503)
                finished = True
                return
            if isinstance(out, Exception):
                yield responses.error_event(str(out))
                continue
            completion_tokens += len(out.delta_token_ids)
            choice = _choice(reply, i, out, offsets, parsed[i] if parsed else None)
            yield reply.event([choice], usage() if reply.continuous_usage else None)
        if reply.include_usage:
            yield reply.event([], usage())
        yield responses.DONE
        count(request, 200)
        finished = True
    finally:
        if not finished:
            count(request, 499)  # the client went away mid-stream
        await items.aclose()  # closes each generate() stream, which aborts its request


def _choice(reply: Reply, i: int, out: RequestOutput, offsets: list[int], parsed=None) -> dict:
    """One streamed choice: the new text (chat: through its StreamedChoice, `parsed`), and the logprobs
    of the tokens that made it when asked for."""
    choice = {"index": i, "finish_reason": out.finish_reason}
    entries = out.delta_logprobs
    if reply.chat:
        choice["delta"], choice["finish_reason"] = parsed.step(out)
        choice["logprobs"] = responses.chat_logprobs(entries) if entries else None
    else:
        choice["text"] = out.delta_text
        choice["logprobs"] = responses.completion_logprobs(entries, offsets[i]) if entries else None
        offsets[i] += sum(len(e["token"]) for e in entries)
    return choice


async def one_stream(state: ServerState, stream, start: float) -> AsyncIterator[tuple[int, object]]:
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
        observe(state, start, first_at, n)
        await stream.aclose()


async def many_streams(state: ServerState, streams, start: float) -> AsyncIterator[tuple[int, object]]:
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, stream) -> None:
        async for _, out in one_stream(state, stream, start):
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
