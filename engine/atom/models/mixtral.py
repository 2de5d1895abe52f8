"""MixtralForCausalLM: Llama attention + bf16 MoE with softmax -> top-k -> renormalise routing."""

from __future__ import annotations

from ..backends.routing import SOFTMAX_TOPK_RENORM
from ..backends.spec import MoESpec
from ..config import ParallelConfig
from ..layers.moe import MoEBlock, PerExpertNames
from .common import Attention, CausalLM, DecoderLayer, ModelArgs


class Mixtral(CausalLM):
    expert_names = PerExpertNames("block_sparse_moe", {"w1": "gate", "w3": "up", "w2": "down"})


def build(config: dict, parallel: ParallelConfig) -> CausalLM:
    args = ModelArgs.from_config(config)
    spec = MoESpec(
        num_experts=config["num_local_experts"],
        top_k=config["num_experts_per_tok"],
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size,
        quant="bf16",
        activation="silu",
        routing=SOFTMAX_TOPK_RENORM,
    )
    window = config.get("sliding_window")
    layers = [
        DecoderLayer(
            args,
            Attention(args, parallel, sliding_window=window),
            MoEBlock(spec, "gate", router_bias=False, parallel=parallel),
            "block_sparse_moe",
        )
        for _ in range(args.num_layers)
    ]
    return Mixtral(args, layers, parallel)
