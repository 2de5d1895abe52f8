"""Our Triton MoE with MXFP8 activations against MXFP4 experts (A8W4), the scheme aiter ships for
MI355X as moe_gemm_a8w4: both GEMMs run tl.dot_scaled on two scaled operands, which gfx950 compiles to
its native v_mfma_scale_f32_*_f8f6f4 (amd_compile.py checks the ISA). Activations are quantized per row
and per 32 values (e4m3, e8m0 scale: the smallest power of two that keeps the group within 448) as each
tile is loaded; the GEMV decode path is not used, so every token sees the same math.

Its numerics contract (it is not the bf16-activation math): `reference_forward` below is its exact
torch statement; against the bf16-activation reference the error is bounded as docs/backends.md says.
Chosen only with --moe-backend triton_a8w4.
"""

from __future__ import annotations

import torch

from . import torch_moe, triton_moe
from .routing import route
from .spec import MoESpec
from .triton_moe_a8w4_support import SUPPORT  # noqa: F401  (what this backend declares)


def forward(
    x: torch.Tensor, router_logits: torch.Tensor, w: dict[str, torch.Tensor], spec: MoESpec
) -> torch.Tensor:
    weights, ids = route(router_logits, spec.top_k, spec.routing)
    return triton_moe.fused_moe(x, weights, ids, w, spec, activation_quant="mxfp8")


def mxfp8_roundtrip(x: torch.Tensor) -> torch.Tensor:
    """x quantized as the kernel does (per 32 along the last dim, e4m3 values, power-of-two scales that
    keep the group's largest magnitude within 448) and back, in x's dtype."""
    groups = x.float().unflatten(-1, (-1, 32))
    amax = groups.abs().amax(dim=-1, keepdim=True)
    scale = torch.exp2(torch.log2(amax / triton_moe.E4M3_MAX).ceil().clamp(-127, 127))
    return ((groups / scale).to(torch.float8_e4m3fn).float() * scale).flatten(-2).to(x.dtype)


def reference_forward(
    x: torch.Tensor, router_logits: torch.Tensor, w: dict[str, torch.Tensor], spec: MoESpec
) -> torch.Tensor:
    """The A8W4 math in plain torch: the reference MoE with each GEMM's activations through MXFP8."""

    def expert(e: int, rows: torch.Tensor) -> torch.Tensor:
        h = mxfp8_roundtrip(rows).float() @ torch_moe.expert_weights(w, e, "w13", torch.float32).T
        if spec.has_bias:
            h += w["w13_bias"][e].float()
        h = torch_moe.activation(h, spec).to(x.dtype)
        h = mxfp8_roundtrip(h).float() @ torch_moe.expert_weights(w, e, "w2", torch.float32).T
        if spec.has_bias:
            h += w["w2_bias"][e].float()
        return h

    return torch_moe.combine(x, router_logits, spec, expert)
