"""Published model shapes as config.json folders, for random-weight (`--load-format dummy`) benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

# gpt-oss-20b / -120b as published in their config.json (openai/gpt-oss-20b, openai/gpt-oss-120b on the HF Hub)
_GPT_OSS_COMMON = {
    "architectures": ["GptOssForCausalLM"],
    "model_type": "gpt_oss",
    "vocab_size": 201088,
    "hidden_size": 2880,
    "intermediate_size": 2880,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "head_dim": 64,
    "experts_per_token": 4,
    "num_experts_per_tok": 4,
    "sliding_window": 128,
    "rms_norm_eps": 1e-5,
    "rope_theta": 150000,
    "rope_scaling": {
        "rope_type": "yarn",
        "factor": 32.0,
        "beta_fast": 32.0,
        "beta_slow": 1.0,
        "original_max_position_embeddings": 4096,
        "truncate": False,
    },
    "max_position_embeddings": 131072,
    "swiglu_limit": 7.0,
    "attention_bias": True,
    "tie_word_embeddings": False,
    "eos_token_id": 200002,
    "pad_token_id": 199999,
    "quantization_config": {"quant_method": "mxfp4"},
}
SHAPES = {
    "gpt-oss-20b": _GPT_OSS_COMMON | {"num_hidden_layers": 24, "num_local_experts": 32},
    "gpt-oss-120b": _GPT_OSS_COMMON | {"num_hidden_layers": 36, "num_local_experts": 128},
}


def layer_types(config: dict) -> list[str]:
    return [
        "sliding_attention" if i % 2 == 0 else "full_attention" for i in range(config["num_hidden_layers"])
    ]


def write_shape(name: str, folder: Path, num_layers: int | None = None) -> Path:
    """A model folder holding only config.json (optionally cut to fewer layers): load it with load_format='dummy'."""
    config = SHAPES[name] | ({"num_hidden_layers": num_layers} if num_layers else {})
    config |= {"layer_types": layer_types(config)}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder
