"""LlamaForCausalLM (SmolLM2, Llama 2/3): GQA attention, SiLU MLP, optional tied embeddings."""

from __future__ import annotations

from ..config import ParallelConfig
from .common import Attention, CausalLM, DecoderLayer, DenseMLP, ModelArgs


def build(config: dict, parallel: ParallelConfig) -> CausalLM:
    args = ModelArgs.from_config(config)
    bias = config.get("attention_bias", False)
    layers = [
        DecoderLayer(args, Attention(args, parallel, bias=bias), DenseMLP(args, parallel))
        for _ in range(args.num_layers)
    ]
    return CausalLM(args, layers, parallel)
