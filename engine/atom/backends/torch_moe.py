"""Reference MoE in plain torch: route, loop over the experts that received tokens, scatter-add."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from . import fp8, mxfp4
from .routing import SIGMOID_GROUPED, SOFTMAX_TOPK, SOFTMAX_TOPK_RENORM, TOPK_SOFTMAX, route
from .spec import MoESpec, Support

SUPPORT = Support(
    devices=frozenset({"cpu", "cuda", "rocm"}),
    quants=frozenset({"bf16", "mxfp4", "fp8_block"}),
    activations=frozenset({"silu", "swiglu_oai"}),
    routings=frozenset({SOFTMAX_TOPK, SOFTMAX_TOPK_RENORM, TOPK_SOFTMAX, SIGMOID_GROUPED}),
)


def activation(gate_up: torch.Tensor, spec: MoESpec) -> torch.Tensor:
    if spec.activation == "silu":  # [gate | up] halves
        gate, up = gate_up.chunk(2, dim=-1)
        return F.silu(gate) * up
    # swiglu_oai: interleaved rows (even = gate, odd = up), clamped, (up + 1) * gate * sigmoid(alpha * gate)
    gate, up = gate_up[..., 0::2], gate_up[..., 1::2]
    gate = gate.clamp(max=spec.swiglu_limit)
    up = up.clamp(-spec.swiglu_limit, spec.swiglu_limit)
    return (up + 1) * gate * torch.sigmoid(spec.swiglu_alpha * gate)


def expert_weights(
    w: dict[str, torch.Tensor], e: int, name: str, dtype: torch.dtype, block: int = 128
) -> torch.Tensor:
    if f"{name}_blocks" in w:
        return mxfp4.dequantize(w[f"{name}_blocks"][e], w[f"{name}_scales"][e], dtype)
    if f"{name}_scale" in w:  # FP8 blocks
        return fp8.dequantize(w[name][e], w[f"{name}_scale"][e], (block, block)).to(dtype)
    return w[name][e]


def forward(
    x: torch.Tensor, router_logits: torch.Tensor, w: dict[str, torch.Tensor], spec: MoESpec
) -> torch.Tensor:
    """x [T, H]; w holds w13 [E, 2I, H] / w2 [E, H, I] (or *_blocks/*_scales for mxfp4) and optional biases."""

    def expert(e: int, rows: torch.Tensor) -> torch.Tensor:
        w13, w2 = (expert_weights(w, e, n, x.dtype, spec.quant_block) for n in ("w13", "w2"))
        h = activation(F.linear(rows, w13, w["w13_bias"][e] if spec.has_bias else None), spec)
        return F.linear(h, w2, w["w2_bias"][e] if spec.has_bias else None)

    return combine(x, router_logits, spec, expert, w.get("routing_bias"))


def combine(
    x: torch.Tensor,
    router_logits: torch.Tensor,
    spec: MoESpec,
    expert: Callable[[int, torch.Tensor], torch.Tensor],
    routing_bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Route, run expert(e, its tokens' rows) for each expert that got tokens, and sum the outputs times
    their routing weights in fp32."""
    weights, ids = route(
        router_logits, spec.top_k, spec.routing, routing_bias, spec.groups, spec.routed_scaling
    )
    out = torch.zeros(x.shape, dtype=torch.float32, device=x.device)
    for e in ids.unique().tolist():
        token, slot = (ids == e).nonzero(as_tuple=True)
        out.index_add_(0, token, expert(e, x[token]).float() * weights[token, slot, None])
    return out.to(x.dtype)
