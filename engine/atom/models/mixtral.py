"""MixtralForCausalLM: Llama attention + bf16 MoE with softmax -> top-k -> renormalise routing."""

from __future__ import annotations

import re

from ..backends.routing import SOFTMAX_TOPK_RENORM
from ..backends.spec import MoESpec
from ..config import ParallelConfig
from .common import Attention, CausalLM, DecoderLayer, ModelArgs, MoEBlock

EXPERT = re.compile(r"(.*\.block_sparse_moe)\.experts\.(\d+)\.(w1|w2|w3)\.weight$")
STACKED = re.compile(r"(.*\.block_sparse_moe)\.experts\.(w13|w2)$")


class Mixtral(CausalLM):
    def remap(self, name: str):
        m = EXPERT.match(name)
        if not m:
            return [(name, None)]
        prefix, e, which = m.group(1), int(m.group(2)), m.group(3)
        experts = self.get_submodule(f"{prefix}.experts")
        target = f"{prefix}.experts.{'w2' if which == 'w2' else 'w13'}"  # w1 = gate, w3 = up
        return [(target, lambda p, t: experts.load_expert(e, which, t))]

    def pieces(self, target: str) -> set[str]:
        m = STACKED.match(target)
        if not m:
            return set()
        prefix, which = m.groups()
        names = ("w1", "w3") if which == "w13" else ("w2",)
        experts = self.model.layers[0].block_sparse_moe.experts.spec.num_experts
        return {f"{prefix}.experts.{e}.{n}.weight" for e in range(experts) for n in names}


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
