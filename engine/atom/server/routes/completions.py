"""POST /v1/completions: one prompt or a batch (text or token ids)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..generation import serve
from ..protocol import CompletionRequest
from ..state import server_state

router = APIRouter()


@router.post("/v1/completions")
async def completions(body: CompletionRequest, request: Request):
    state = server_state(request)
    return await serve(
        state, request, body, body.prompts(), "text_completion", body.logprobs, body.max_tokens
    )
