"""aiter's CK fused MoE (ROCm, gfx942/gfx950, images built with ENABLE_CK=1).

UNEXECUTED on the machines this project is developed and tested on (no AMD GPU): `fused_moe_args` (routing,
dtypes, weight layout, quant type) is tested on the CPU; the call into `aiter.fused_moe.fused_moe` is written
against the pinned aiter commit's public signature and has never run here.
"""

from __future__ import annotations

import torch

from .aiter_moe_support import SUPPORT  # noqa: F401  (what this backend declares)
from .routing import route
from .spec import MoESpec

# our quant name -> aiter QuantType member; activations -> ActivationType member
QUANT_TYPES = {"bf16": "No", "fp8_tensor": "per_Tensor", "fp8_block": "per_128x128"}
ACTIVATIONS = {"silu": "Silu"}


def fused_moe_args(
    x: torch.Tensor, router_logits: torch.Tensor, w: dict[str, torch.Tensor], spec: MoESpec
) -> dict:
    """Keyword arguments for aiter.fused_moe.fused_moe, with enum members named (resolved at call time)."""
    weights, ids = route(router_logits, spec.top_k, spec.routing)
    args = {
        "hidden_states": x.contiguous(),
        "w1": w["w13"],  # [E, 2I, H]: gate rows then up rows, as aiter's Silu expects
        "w2": w["w2"],  # [E, H, I]
        "topk_weight": weights.to(torch.float32).contiguous(),
        "topk_ids": ids.to(torch.int32).contiguous(),
        "activation": ACTIVATIONS[spec.activation],
        "quant_type": QUANT_TYPES[spec.quant],
    }
    if spec.quant != "bf16":
        args |= {"w1_scale": w["w13_scale"], "w2_scale": w["w2_scale"]}
    return args


def forward(
    x: torch.Tensor, router_logits: torch.Tensor, w: dict[str, torch.Tensor], spec: MoESpec
) -> torch.Tensor:
    from aiter import ActivationType, QuantType
    from aiter.fused_moe import fused_moe

    args = fused_moe_args(x, router_logits, w, spec)
    args["activation"] = getattr(ActivationType, args["activation"])
    args["quant_type"] = getattr(QuantType, args["quant_type"])
    return fused_moe(**args)
