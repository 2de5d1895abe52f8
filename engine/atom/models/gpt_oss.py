"""GptOssForCausalLM: attention with biases and sinks, alternating sliding (128) / full layers, YaRN rope,
MXFP4 experts with top-k-then-softmax routing and clamped interleaved SwiGLU (alpha 1.702, limit 7)."""

from __future__ import annotations

import re

from ..backends.routing import TOPK_SOFTMAX
from ..backends.spec import MoESpec
from ..config import ParallelConfig
from ..layers.moe import MoEBlock
from .common import Attention, CausalLM, DecoderLayer, ModelArgs

EXPERTS = re.compile(r"(.*\.mlp\.experts)\.(gate_up_proj|down_proj)(_blocks|_scales|_bias)?$")


class GptOss(CausalLM):
    def remap(self, name: str):
        m = EXPERTS.match(name)
        if not m:
            return [(name, None)]
        prefix, which, suffix = m.group(1), m.group(2), m.group(3) or ""
        target = f"{prefix}.{'w13' if which == 'gate_up_proj' else 'w2'}{suffix}"
        if suffix == "":  # unquantized checkpoints store [E, in, out]
            return [(target, lambda p, t: p.weight_loader(p, t.transpose(1, 2)))]
        return [(target, None)]


def build(config: dict, parallel: ParallelConfig) -> CausalLM:
    args = ModelArgs.from_config(config)
    quant = (config.get("quantization_config") or {}).get("quant_method", "bf16")
    spec = MoESpec(
        num_experts=config["num_local_experts"],
        top_k=config["num_experts_per_tok"],
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size,
        quant="mxfp4" if quant == "mxfp4" else "bf16",
        activation="swiglu_oai",
        routing=TOPK_SOFTMAX,
        has_bias=True,
        swiglu_alpha=config.get("swiglu_alpha", 1.702),
        swiglu_limit=config.get("swiglu_limit", 7.0),
    )
    types = config.get("layer_types") or [
        "sliding_attention" if i % 2 == 0 else "full_attention" for i in range(args.num_layers)
    ]
    window = config.get("sliding_window", 128)
    layers = [
        DecoderLayer(
            args,
            Attention(
                args,
                parallel,
                bias=True,
                sinks=True,
                sliding_window=window if types[i] == "sliding_attention" else None,
            ),
            MoEBlock(spec, "router", router_bias=True, parallel=parallel),
        )
        for i in range(args.num_layers)
    ]
    return GptOss(args, layers, parallel)
