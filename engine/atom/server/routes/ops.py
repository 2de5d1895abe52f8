"""GET /health (loading, ok or failed with the reason) and GET /metrics (Prometheus text)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import generate_latest

from ..state import server_state

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    state = server_state(request)
    if state.engine and state.engine.error:
        return JSONResponse({"status": "failed", "error": state.engine.error}, status_code=503)
    if not state.ready_engine():
        return JSONResponse({"status": "loading"}, status_code=503)
    replicas = state.engine.replicas
    if len(replicas) > 1:  # data parallelism: ok while one serves; say which are out
        down = {r.index: r.error or "starting" for r in replicas if not r.ready}
        return JSONResponse({"status": "ok", "replicas": len(replicas), "down": down})
    return JSONResponse({"status": "ok"})


@router.get("/metrics")
async def metrics(request: Request) -> PlainTextResponse:
    state = server_state(request)
    if state.ready_engine():
        state.metrics.observe_stats(state.engine.stats)  # what the cores reported with their last step
        state.metrics.observe_replicas(state.engine)
    text = generate_latest(state.metrics.registry).decode()
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
