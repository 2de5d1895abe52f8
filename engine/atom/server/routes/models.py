"""GET /v1/models and /v1/models/{id}: the one model this server serves."""

from __future__ import annotations

from fastapi import APIRouter, Request

from ..responses import error
from ..state import ServerState, server_state

router = APIRouter()


def model_card(state: ServerState) -> dict:
    engine = state.ready_engine()
    return {
        "id": state.model_name,
        "object": "model",
        "created": state.created,
        "owned_by": "atom",
        "max_model_len": engine.info.max_model_len if engine else None,
    }


@router.get("/v1/models")
async def models(request: Request) -> dict:
    return {"object": "list", "data": [model_card(server_state(request))]}


@router.get("/v1/models/{model_id:path}")
async def model(model_id: str, request: Request):
    state = server_state(request)
    if model_id != state.model_name:
        message = f"model {model_id[:200]!r} is not served here; this server has {state.model_name!r}"
        return error(404, message, kind="not_found_error")
    return model_card(state)
