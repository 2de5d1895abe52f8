"""OpenAI response bodies and SSE events, built from RequestOutputs (no routing, no engine access)."""

from __future__ import annotations

import json
import time

from fastapi.responses import JSONResponse

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


def full_response(
    rid: str, kind: str, model: str, finals: list[RequestOutput], prompt_tokens: int, fingerprint: str
) -> dict:
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
    return body(rid, kind, model, fingerprint, choices, usage(prompt_tokens, completion_tokens))


def event(
    rid: str, kind: str, model: str, fingerprint: str, choices: list, usage_: dict | None = None
) -> str:
    return f"data: {json.dumps(body(rid, kind, model, fingerprint, choices, usage_))}\n\n"


def error_event(message: str, kind: str = "server_error", code: str | None = None) -> str:
    return f"data: {json.dumps(error_body(message, kind, code))}\n\n"


DONE = "data: [DONE]\n\n"
