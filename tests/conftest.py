"""Shared fixtures: the real demo model, and small random checkpoints written in HF's own layouts."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # Triton kernels run in Triton's CPU interpreter here; it is read when kernels are defined, so set it first.
    os.environ.setdefault("TRITON_INTERPRET", "1")

CACHE = Path(os.environ.get("ATOM_TEST_CACHE", Path.home() / ".cache" / "atom-build" / "test-models"))


@pytest.fixture(scope="session")
def smollm2() -> Path:
    from atom_build.demo_model import ensure_demo_model

    return ensure_demo_model()


def _copy_tokenizer(src: Path, dst: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (src / name).exists():
            shutil.copy(src / name, dst / name)


def _saved_by_hf(name: str, smollm2: Path, model_class, config) -> Path:
    """A random checkpoint HF writes itself (seeded, cached across runs), with SmolLM2's tokenizer."""
    out = CACHE / name
    if not (out / "model.safetensors").exists():
        torch.manual_seed(0)
        model_class(config).save_pretrained(out)
        _copy_tokenizer(smollm2, out)
    return out


def _write_gpt_oss(out: Path, vocab_size: int) -> None:
    """Random gpt-oss with MXFP4 experts (blocks/scales), sliding window 16 so tests exceed it cheaply."""
    from safetensors.torch import save_file
    from transformers import GptOssConfig, GptOssForCausalLM

    from atom.backends import mxfp4

    torch.manual_seed(0)
    config = GptOssConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=64,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        num_local_experts=8,
        num_experts_per_tok=2,
        sliding_window=16,
        initializer_range=0.08,
        max_position_embeddings=4096,
        eos_token_id=2,
        pad_token_id=0,
    )
    model = GptOssForCausalLM(config)
    state = {}
    for name, t in model.state_dict().items():
        t = t.detach().float()
        if name.endswith(("gate_up_proj", "down_proj")):
            blocks, scales = mxfp4.quantize(t.transpose(1, 2).contiguous())  # HF stores [E, in, out]
            state[name + "_blocks"], state[name + "_scales"] = blocks, scales
        elif name.endswith("sinks"):
            state[name] = torch.randn_like(t)  # non-trivial sinks
        else:
            state[name] = t.contiguous()
    out.mkdir(parents=True, exist_ok=True)
    save_file(state, out / "model.safetensors")
    cfg = config.to_dict()
    cfg["architectures"] = ["GptOssForCausalLM"]
    cfg["quantization_config"] = {
        "quant_method": "mxfp4",
        "modules_to_not_convert": [
            "model.layers.*.self_attn",
            "model.layers.*.mlp.router",
            "model.embed_tokens",
            "lm_head",
        ],
    }
    (out / "config.json").write_text(json.dumps(cfg, indent=2))


@pytest.fixture(scope="session")
def tiny_gpt_oss(smollm2: Path) -> Path:
    out = CACHE / "tiny-gpt-oss-mxfp4"
    if not (out / "model.safetensors").exists():
        _write_gpt_oss(out, vocab_size=49152)
        _copy_tokenizer(smollm2, out)
    return out


@pytest.fixture(scope="session")
def real_chat_templates() -> dict[str, str]:
    """gpt-oss's, Qwen3's and Llama 3.1's chat templates as their models ship them (tests/chat_templates.py)."""
    from .chat_templates import real_templates

    return real_templates(CACHE)


@pytest.fixture(scope="session")
def tiny_gpt_oss_harmony(smollm2: Path, real_chat_templates) -> Path:
    """The tiny gpt-oss with a tokenizer that has Harmony's special tokens and gpt-oss's real template."""
    from .chat_templates import write_harmony_tokenizer

    out = CACHE / "tiny-gpt-oss-harmony"
    if not (out / "chat_template.jinja").exists():
        _write_gpt_oss(out, vocab_size=49168)
        write_harmony_tokenizer(smollm2, out, real_chat_templates["gpt-oss"])
    return out


@pytest.fixture(scope="session")
def tiny_llama(smollm2: Path) -> Path:
    """Random Llama shaped to exercise tensor parallelism's corners: one K/V head (replicated past it),
    attention biases (row-parallel o_proj bias added once) and a vocabulary no rank count divides."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=49157,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=1,
        attention_bias=True,
        initializer_range=0.08,
        max_position_embeddings=2048,
        eos_token_id=2,
    )
    return _saved_by_hf("tiny-llama", smollm2, LlamaForCausalLM, config)


@pytest.fixture(scope="session")
def tiny_llama_biased(tiny_llama: Path) -> Path:
    """tiny_llama with random attention biases: HF initialises biases to zero, which hides a row-parallel
    bias added on every rank instead of once."""
    from safetensors.torch import load_file, save_file

    out = CACHE / "tiny-llama-biased"
    if not (out / "model.safetensors").exists():
        shutil.copytree(tiny_llama, out, dirs_exist_ok=True)
        tensors = load_file(out / "model.safetensors")
        gen = torch.Generator().manual_seed(1)
        for name, t in tensors.items():
            if name.endswith(".bias"):
                tensors[name] = (torch.randn(t.shape, generator=gen) * 0.5).to(t.dtype)
        save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
    return out


@pytest.fixture(scope="session")
def tiny_qwen3(smollm2: Path) -> Path:
    """Random Qwen3: q/k norms per head, head_dim (32) apart from hidden / heads (16), tied embeddings."""
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=32,
        tie_word_embeddings=True,
        initializer_range=0.08,
        max_position_embeddings=2048,
        eos_token_id=2,
    )
    return _saved_by_hf("tiny-qwen3", smollm2, Qwen3ForCausalLM, config)


@pytest.fixture(scope="session")
def tiny_qwen3_moe(smollm2: Path) -> Path:
    """Random Qwen3-MoE: 8 experts, top-2 renormalised, layer 0 dense (mlp_only_layers), experts saved
    one by one as HF does."""
    from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

    config = Qwen3MoeConfig(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=96,
        moe_intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        num_experts=8,
        num_experts_per_tok=2,
        norm_topk_prob=True,
        mlp_only_layers=[0],
        initializer_range=0.08,
        max_position_embeddings=2048,
        eos_token_id=2,
    )
    return _saved_by_hf("tiny-qwen3-moe", smollm2, Qwen3MoeForCausalLM, config)


DEEPSEEK_ROPE = {  # YaRN with DeepSeek's two mscales (the rotary's factor is their ratio, the softmax's
    "rope_type": "yarn",  # scale takes mscale_all_dim squared)
    "rope_theta": 10000.0,
    "factor": 4.0,
    "original_max_position_embeddings": 512,
    "beta_fast": 32,
    "beta_slow": 1,
    "mscale": 0.707,
    "mscale_all_dim": 1.0,
}


@pytest.fixture(scope="session")
def tiny_deepseek_v3(smollm2: Path) -> Path:
    """Random DeepSeek-V3 in bf16: MLA (q and kv low-rank, interleaved rope dims, YaRN), layer 0 dense,
    8 routed experts in 4 groups (2 kept per token) with a non-zero correction bias, one shared expert."""
    from transformers import DeepseekV3Config, DeepseekV3ForCausalLM

    out = CACHE / "tiny-deepseek-v3"
    if (out / "model.safetensors").exists():
        return out
    torch.manual_seed(0)
    config = DeepseekV3Config(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=96,
        moe_intermediate_size=32,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=4,
        n_routed_experts=8,
        num_experts_per_tok=2,
        n_group=4,
        topk_group=2,
        n_shared_experts=1,
        first_k_dense_replace=1,
        routed_scaling_factor=2.5,
        kv_lora_rank=32,
        q_lora_rank=48,
        qk_rope_head_dim=8,
        qk_nope_head_dim=16,
        v_head_dim=16,
        rope_parameters=DEEPSEEK_ROPE,
        initializer_range=0.08,
        max_position_embeddings=2048,
        bos_token_id=1,
        eos_token_id=2,
    )
    model = DeepseekV3ForCausalLM(config)
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "e_score_correction_bias"):  # zeros from HF's init would not test it
                module.e_score_correction_bias.copy_(torch.randn_like(module.e_score_correction_bias) * 0.1)
    model.to(torch.bfloat16).save_pretrained(out)
    _copy_tokenizer(smollm2, out)
    return out


@pytest.fixture(scope="session")
def tiny_deepseek_v3_fp8(tiny_deepseek_v3: Path) -> tuple[Path, Path]:
    """The same model with its projections FP8 block-quantized (32x32 blocks, so matrices hold several,
    some partial), and an fp32 copy of exactly the weights that dequantizes to, for HF."""
    return _deepseek_fp8(tiny_deepseek_v3, "tiny-deepseek-v3-fp8", (32, 32))


@pytest.fixture(scope="session")
def tiny_deepseek_v3_fp8_16(tiny_deepseek_v3: Path) -> tuple[Path, Path]:
    """As tiny_deepseek_v3_fp8 with 16x16 blocks: two ranks' slices of every split matrix (heads, MLP and
    expert intermediates) fall on block edges, as DeepSeek-V3's 128x128 blocks do at 8 ranks."""
    return _deepseek_fp8(tiny_deepseek_v3, "tiny-deepseek-v3-fp8-16", (16, 16))


def _deepseek_fp8(source: Path, name: str, block: tuple[int, int]) -> tuple[Path, Path]:
    from safetensors.torch import load_file, save_file

    from atom.backends import fp8

    out, plain = CACHE / name, CACHE / f"{name}-dequantized"
    if (out / "model.safetensors").exists() and (plain / "model.safetensors").exists():
        return out, plain
    quantized, dequantized = {}, {}
    for tensor_name, t in load_file(source / "model.safetensors").items():
        if tensor_name.endswith("proj.weight") or tensor_name.endswith("proj_with_mqa.weight"):
            values, scale = fp8.quantize(t.float(), block)
            quantized[tensor_name], quantized[tensor_name + "_scale_inv"] = values, scale
            dequantized[tensor_name] = fp8.dequantize(values, scale, block)
        else:
            quantized[tensor_name] = dequantized[tensor_name] = t.float()
    config = json.loads((source / "config.json").read_text())
    for folder, state, quant in (
        (out, quantized, {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": list(block)}),
        (plain, dequantized, None),
    ):
        folder.mkdir(parents=True, exist_ok=True)
        save_file(state, folder / "model.safetensors")
        (folder / "config.json").write_text(
            json.dumps({**config, "quantization_config": quant} if quant else config)
        )
        _copy_tokenizer(source, folder)
    return out, plain


@pytest.fixture(scope="session")
def tiny_mixtral(smollm2: Path) -> Path:
    """Random Mixtral (bf16 MoE, softmax -> top-k -> renormalise), saved by HF itself."""
    from transformers import MixtralConfig, MixtralForCausalLM

    config = MixtralConfig(
        vocab_size=49152,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=6,
        num_experts_per_tok=2,
        initializer_range=0.08,
        max_position_embeddings=2048,
        eos_token_id=2,
    )
    return _saved_by_hf("tiny-mixtral", smollm2, MixtralForCausalLM, config)
