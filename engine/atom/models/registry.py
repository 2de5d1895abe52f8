"""Model registry keyed by config.json `architectures`."""

from __future__ import annotations

from collections.abc import Callable

from ..config import ParallelConfig
from ..errors import ModelLoadError
from . import deepseek_v3, gpt_oss, llama, mixtral, qwen3
from .common import CausalLM

MODELS: dict[str, Callable[[dict, ParallelConfig], CausalLM]] = {
    "LlamaForCausalLM": llama.build,
    "MixtralForCausalLM": mixtral.build,
    "GptOssForCausalLM": gpt_oss.build,
    "DeepseekV3ForCausalLM": deepseek_v3.build,
    "Qwen3ForCausalLM": qwen3.build,
    "Qwen3MoeForCausalLM": qwen3.build_moe,
}


def build_model(config: dict, parallel: ParallelConfig) -> CausalLM:
    archs = config.get("architectures") or []
    for arch in archs:
        if arch in MODELS:
            return MODELS[arch](config, parallel)
    raise ModelLoadError(f"unknown architecture {archs}; supported: {sorted(MODELS)}")
