"""OpenAI response bodies and SSE events, built from RequestOutputs (no routing, no engine access)."""

from __future__ import annotations

import json
import time

from fastapi.responses import JSONResponse

from ..chat import ChatDelta
from ..output import RequestOutput

# OpenAI's error `code` is a string naming the case, or null; these are the cases it names that we have
CODES = {401: "invalid_api_key", 404: "not_found", 413: "request_too_large", 429: "rate_limit_exceeded"}


def error(
    status: int,
    message: str,
    kind: str = "invalid_request_error",
    param: str | None = None,
    headers: dict | None = None,
) -> JSONResponse:
    return JSONResponse(
        error_body(message, kind, CODES.get(status), param), status_code=status, headers=headers
    )


def error_body(message: str, kind: str, code: str | None = None, param: str | None = None) -> dict:
    """The OpenAI error shape, for every error the server sends (JSON bodies, SSE events, middleware)."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_logprobs(entries: list[dict]) -> dict:
    """entries: RequestOutput.logprobs (token text already decoded by the output processor)."""
    return {
        "content": [
            {
                "token": e["token"],
                "logprob": e["logprob"],
                "top_logprobs": [{"token": t["token"], "logprob": t["logprob"]} for t in e["top"]],
            }
            for e in entries
        ]
    }


def completion_logprobs(entries: list[dict], offset: int = 0) -> dict:
    """offset: characters of completion text before the first entry (a stream's earlier chunks)."""
    starts = []
    for e in entries:
        starts.append(offset)
        offset += len(e["token"])
    return {
        "tokens": [e["token"] for e in entries],
        "token_logprobs": [e["logprob"] for e in entries],
        "top_logprobs": [{t["token"]: t["logprob"] for t in e["top"]} for e in entries],
        "text_offset": starts,
    }


def body(rid: str, kind: str, model: str, fingerprint: str, choices: list, usage_: dict | None) -> dict:
    """What every response and every chunk carries; usage only where there is one."""
    out = {
        "id": rid,
        "object": kind,
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": fingerprint,
        "choices": choices,
    }
    if usage_ is not None:
        out["usage"] = usage_
    return out


def finish_reason(reason: str | None, called: bool) -> str | None:
    """OpenAI's: an answer that ends in tool calls finished for them (unless it was cut short)."""
    return "tool_calls" if called and reason == "stop" else reason


def parse_whole(parser, out: RequestOutput) -> ChatDelta:
    """A whole answer through a fresh chat output parser (None: plain text)."""
    if parser is None:
        return ChatDelta(content=out.text)
    parsed = parser.feed(out.output_token_ids, out.text)
    parsed += parser.finish()
    return parsed


def chat_message(parsed: ChatDelta) -> dict:
    calls = parsed.tool_calls
    content = parsed.content if parsed.content.strip() or not calls else None  # OpenAI: null beside calls
    message = {"role": "assistant", "content": content}
    if parsed.reasoning:
        message["reasoning_content"] = parsed.reasoning
    if calls:
        message["tool_calls"] = [c.openai() for c in calls]
    return message


class StreamedChoice:
    """One streamed chat choice through its output parser: each output becomes a delta with what it
    adds (reasoning_content, content, whole tool calls numbered across the answer)."""

    def __init__(self, parser) -> None:
        self.parser = parser
        self.calls = 0

    def step(self, out: RequestOutput) -> tuple[dict, str | None]:
        if self.parser is None:
            return ({"content": out.delta_text} if out.delta_text else {}), out.finish_reason
        parsed = self.parser.feed(out.delta_token_ids, out.delta_text)
        if out.finished:
            parsed += self.parser.finish()
        delta = {}
        if parsed.reasoning:
            delta["reasoning_content"] = parsed.reasoning
        if parsed.content:
            delta["content"] = parsed.content
        if parsed.tool_calls:
            delta["tool_calls"] = [c.openai(self.calls + k) for k, c in enumerate(parsed.tool_calls)]
            self.calls += len(parsed.tool_calls)
        return delta, finish_reason(out.finish_reason, self.calls > 0)


def full_response(
    rid: str,
    kind: str,
    model: str,
    finals: list[RequestOutput],
    prompt_tokens: int,
    fingerprint: str,
    parsed: list[ChatDelta] | None = None,
) -> dict:
    """parsed: each chat choice through its output parser (parse_whole); chat only."""
    choices = []
    for i, out in enumerate(finals):
        choice = {"index": i, "finish_reason": out.finish_reason}
        if kind == "chat.completion":
            answer = parsed[i]
            choice["message"] = chat_message(answer)
            choice["finish_reason"] = finish_reason(out.finish_reason, bool(answer.tool_calls))
            choice["logprobs"] = chat_logprobs(out.logprobs) if out.logprobs else None
        else:
            choice["text"] = out.text
            choice["logprobs"] = completion_logprobs(out.logprobs) if out.logprobs else None
        choices.append(choice)
    completion_tokens = sum(len(o.output_token_ids) for o in finals)
    return body(rid, kind, model, fingerprint, choices, usage(prompt_tokens, completion_tokens))


def event(
    rid: str, kind: str, model: str, fingerprint: str, choices: list, usage_: dict | None = None
) -> str:
    return f"data: {json.dumps(body(rid, kind, model, fingerprint, choices, usage_))}\n\n"


def error_event(message: str, kind: str = "server_error", code: str | None = None) -> str:
    return f"data: {json.dumps(error_body(message, kind, code))}\n\n"


DONE = "data: [DONE]\n\n"
