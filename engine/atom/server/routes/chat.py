"""POST /v1/chat/completions: messages rendered with the model's chat template (off the event loop)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ...errors import InvalidRequestError
from ..generation import serve
from ..protocol import ChatCompletionRequest
from ..responses import error
from ..state import server_state

router = APIRouter()


@router.post("/v1/chat/completions")
async def chat(body: ChatCompletionRequest, request: Request):
    state = server_state(request)
    engine = state.ready_engine()
    if engine is None:
        return state.not_ready()
    messages = [m.for_template() for m in body.messages]
    try:
        prompt = await state.off_loop(engine.tokenizer.apply_chat_template, messages)
    except InvalidRequestError as e:
        state.count(request, 400)
        return error(400, str(e))
    logprobs = (body.top_logprobs or 0) if body.logprobs else None
    max_tokens = body.max_completion_tokens or body.max_tokens
    return await serve(state, request, body, [prompt], "chat.completion", logprobs, max_tokens)
