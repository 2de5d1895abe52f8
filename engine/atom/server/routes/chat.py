"""POST /v1/chat/completions: messages rendered with the model's chat template (off the event loop),
tools described to it, a required call constrained to its schema, the answer parsed by chat format."""

from __future__ import annotations

import functools

from fastapi import APIRouter, Request

from ...chat import ChatFormat
from ...errors import InvalidRequestError
from ..generation import serve
from ..protocol import ChatCompletionRequest
from ..responses import error
from ..state import server_state

router = APIRouter()

# read from the template once per tokenizer (the server has one), not per request
_chat_format = functools.lru_cache(maxsize=4)(ChatFormat.of)


def prepare(tokenizer, chat: ChatFormat, body: ChatCompletionRequest) -> tuple[str, str | None]:
    """The prompt, and the grammar of a required tool call (built once per distinct set of tools)."""
    tools = body.active_tools()
    messages = chat.template_messages([m.for_template() for m in body.messages], tools)
    prompt = tokenizer.apply_chat_template(
        messages, tools=chat.template_tools(tools), reasoning_effort=body.reasoning_effort
    )
    forced = body.forced_tools()
    return prompt, chat.grammar(forced, body.parallel_tool_calls) if forced else None


@router.post("/v1/chat/completions")
async def chat(body: ChatCompletionRequest, request: Request):
    state = server_state(request)
    engine = state.ready_engine()
    if engine is None:
        return state.not_ready()
    chat_format = _chat_format(engine.tokenizer)
    try:
        prompt, grammar = await state.off_loop(prepare, engine.tokenizer, chat_format, body)
    except InvalidRequestError as e:
        state.count(request, 400)
        return error(400, str(e))
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    max_tokens = body.max_completion_tokens or body.max_tokens
    parser = functools.partial(chat_format.parser, engine.tokenizer, body.active_tools())
    return await serve(
        state, request, body, [prompt], "chat.completion", logprobs, max_tokens, grammar, parser
    )
