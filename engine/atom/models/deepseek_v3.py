"""DeepseekV3ForCausalLM: multi-head latent attention (layers/mla.py), the first k layers dense, the rest
MoE with sigmoid grouped top-k routing (bias-corrected choice, renormalised weights times the routed
scaling factor) plus shared experts. The multi-token-prediction layer some checkpoints carry
(model.layers.<num_hidden_layers>) is not used for decoding and is skipped."""

from __future__ import annotations

import re

import torch
from torch import nn

from ..backends.routing import SIGMOID_GROUPED
from ..backends.spec import MoESpec
from ..config import ParallelConfig
from ..errors import ModelLoadError
from ..layers.linear import Linear
from ..layers.mla import MLAttention
from ..layers.moe import FusedMoE, PerExpertNames
from .common import CausalLM, DecoderLayer, DenseMLP, ModelArgs

LAYER = re.compile(r"model\.layers\.(\d+)\.")


class DeepseekMoE(nn.Module):
    """Router (gate, with its score-correction bias) + routed experts + shared experts."""

    def __init__(self, spec: MoESpec, args: ModelArgs, shared: int, parallel: ParallelConfig) -> None:
        super().__init__()
        self.gate = Linear(spec.hidden_size, spec.num_experts, False, quantizable=False)
        self.gate.e_score_correction_bias = nn.Parameter(torch.zeros(spec.num_experts), requires_grad=False)
        self.experts = FusedMoE(spec, parallel, routing_bias=self.gate.e_score_correction_bias)
        self.shared_experts = DenseMLP(args, parallel, spec.intermediate_size * shared) if shared else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.experts(x, self.gate(x))
        return out + self.shared_experts(x) if self.shared_experts is not None else out

    def defer_reduce(self) -> bool:
        """Both partial outputs unsummed: their sum is this rank's partial, summed once after."""
        shared = self.shared_experts.defer_reduce() if self.shared_experts is not None else True
        return self.experts.defer_reduce() and shared


class DeepseekV3(CausalLM):
    expert_names = PerExpertNames("mlp", {"gate_proj": "gate", "up_proj": "up", "down_proj": "down"})

    def remap(self, name: str) -> list[tuple[str, object]]:
        m = LAYER.match(name)
        if m and int(m.group(1)) >= self.args.num_layers:
            return []  # the multi-token-prediction layer
        return super().remap(name)


def build(config: dict, parallel: ParallelConfig) -> CausalLM:
    args = ModelArgs.from_config(config)
    if not config.get("norm_topk_prob", True):
        raise ModelLoadError("DeepSeek-V3 routing without norm_topk_prob is not supported")
    spec = MoESpec(
        num_experts=config.get("n_routed_experts") or config["num_local_experts"],
        top_k=config["num_experts_per_tok"],
        hidden_size=args.hidden_size,
        intermediate_size=config["moe_intermediate_size"],
        quant="bf16",
        activation="silu",
        routing=SIGMOID_GROUPED,
        groups=(config.get("n_group", 1), config.get("topk_group", 1)),
        routed_scaling=config.get("routed_scaling_factor", 1.0),
    )
    dense = config.get("first_k_dense_replace", 0)
    layers = [
        DecoderLayer(
            args,
            MLAttention(config, args.rms_norm_eps, parallel),
            DenseMLP(args, parallel)
            if i < dense
            else DeepseekMoE(spec, args, config.get("n_shared_experts", 0), parallel),
        )
        for i in range(args.num_layers)
    ]
    return DeepseekV3(args, layers, parallel)
