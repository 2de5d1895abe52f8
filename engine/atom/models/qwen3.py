"""Qwen3ForCausalLM (Llama with RMSNorm over each head's q and k) and Qwen3MoeForCausalLM (the same
attention; MoE layers of softmax -> top-k routing, renormalised when norm_topk_prob, no shared expert;
layers listed in mlp_only_layers, or off the decoder_sparse_step, are dense)."""

from __future__ import annotations

from ..backends.routing import SOFTMAX_TOPK, SOFTMAX_TOPK_RENORM
from ..backends.spec import MoESpec
from ..config import ParallelConfig
from ..errors import ModelLoadError
from ..layers.moe import MoEBlock, PerExpertNames
from .common import Attention, CausalLM, DecoderLayer, DenseMLP, ModelArgs


class Qwen3Moe(CausalLM):
    expert_names = PerExpertNames("mlp", {"gate_proj": "gate", "up_proj": "up", "down_proj": "down"})


def _attention(config: dict, args: ModelArgs, parallel: ParallelConfig) -> Attention:
    if config.get("use_sliding_window"):
        raise ModelLoadError("Qwen3 with use_sliding_window is not supported (no released model uses it)")
    return Attention(args, parallel, bias=config.get("attention_bias", False), qk_norm=True)


def build(config: dict, parallel: ParallelConfig) -> CausalLM:
    args = ModelArgs.from_config(config)
    layers = [
        DecoderLayer(args, _attention(config, args, parallel), DenseMLP(args, parallel))
        for _ in range(args.num_layers)
    ]
    return CausalLM(args, layers, parallel)


def build_moe(config: dict, parallel: ParallelConfig) -> CausalLM:
    args = ModelArgs.from_config(config)
    spec = MoESpec(
        num_experts=config.get("num_experts")
        or config["num_local_experts"],  # hub name; transformers 5 writes the other
        top_k=config["num_experts_per_tok"],
        hidden_size=args.hidden_size,
        intermediate_size=config["moe_intermediate_size"],
        quant="bf16",
        activation="silu",
        routing=SOFTMAX_TOPK_RENORM if config.get("norm_topk_prob") else SOFTMAX_TOPK,
    )
    dense = set(config.get("mlp_only_layers") or [])
    step = config.get("decoder_sparse_step", 1)
    layers = [
        DecoderLayer(
            args,
            _attention(config, args, parallel),
            DenseMLP(args, parallel)
            if i in dense or (i + 1) % step
            else MoEBlock(spec, "gate", router_bias=False, parallel=parallel),
        )
        for i in range(args.num_layers)
    ]
    return Qwen3Moe(args, layers, parallel)
