"""Random DeepSeek-V3 checkpoints (bf16, and FP8 block-quantized) against HF transformers.

Tolerance as for the other families: fp32 on both sides on identical weights (the FP8 model against HF
on exactly the weights it dequantizes to), only the summation order differs (the absorbed MLA form sums
over the latent instead of per-head keys), so greedy tokens are identical and logprobs agree to 1e-3."""

from __future__ import annotations

import pytest
import torch

from atom import LLM
from atom.backends import fp8

from .hf_reference import assert_greedy_matches_hf

N = 12


def prompts() -> list[list[int]]:
    g = torch.Generator().manual_seed(5)
    ids = [torch.randint(3, 49152, (n,), generator=g).tolist() for n in (3, 18, 45)]
    return ids + [ids[2] + ids[0]]  # shares the third's prefix


@pytest.mark.parametrize("prefix_caching", [True, False], ids=["prefix-cache", "no-prefix-cache"])
def test_deepseek_v3_matches_hf(tiny_deepseek_v3, prefix_caching):
    assert_greedy_matches_hf(
        tiny_deepseek_v3,
        prompts(),
        N,
        block_size=8,
        enable_prefix_caching=prefix_caching,
        max_num_batched_tokens=32,
    )


def test_deepseek_v3_fp8_matches_hf_on_the_dequantized_weights(tiny_deepseek_v3_fp8):
    quantized, dequantized = tiny_deepseek_v3_fp8
    assert_greedy_matches_hf(quantized, prompts(), N, reference=dequantized, block_size=8)


def test_mla_keeps_one_latent_cache_per_layer(tiny_deepseek_v3):
    with LLM(str(tiny_deepseek_v3), num_kv_blocks=16, block_size=8) as llm:
        layers = llm.runner.model.attention_layers()
        assert len(layers) == 3
        assert all(tuple(a.cache.shape) == (17, 8, 32 + 8) for a in layers)  # kv_lora_rank + rope dims
        assert not any(hasattr(a, "k_cache") for a in layers)


def test_fp8_block_dequantization_and_the_fnuz_reading_agree():
    """e4m3fn bits read as e4m3fnuz with doubled scales are the same numbers (gfx942's format)."""
    g = torch.Generator().manual_seed(0)
    weight = torch.randn(70, 50, generator=g) * 3
    values, scale = fp8.quantize(weight, (32, 32))
    assert scale.shape == (3, 2)
    back = fp8.dequantize(values, scale, (32, 32))
    assert (back - weight).abs().max() <= 0.07 * weight.abs().max()  # e4m3: 3 mantissa bits
    values[0, 0] = torch.tensor(-0.0).to(torch.float8_e4m3fn)  # the pattern fnuz reads as NaN
    fnuz, fnuz_scale = fp8.to_fnuz(values, scale)
    assert torch.equal(fp8.dequantize(fnuz, fnuz_scale, (32, 32)), fp8.dequantize(values, scale, (32, 32)))


def test_fp8_weights_kept_by_the_triton_linear_match_hf(tiny_deepseek_v3_fp8):
    """The Triton FP8 linear (Triton's interpreter here, fp32) keeps the projections' FP8 weights and
    block scales as stored and gives the same greedy tokens and logprobs as HF on the dequantized ones."""
    quantized, dequantized = tiny_deepseek_v3_fp8
    with LLM(str(quantized), linear_backend="triton", num_kv_blocks=16, block_size=8) as llm:
        kept = [m for m in llm.runner.model.modules() if getattr(m, "fp8", None) is not None]
        assert kept and all(m.weight.dtype == torch.float8_e4m3fn for m in kept)
        assert {type(m).__name__ for m in kept} == {"Linear"} and not any(m is a.kv_b_proj for a in
            llm.runner.model.attention_layers() for m in kept)  # fmt: skip
    assert_greedy_matches_hf(
        quantized, prompts(), N, reference=dequantized, block_size=8, linear_backend="triton"
    )


def test_fp8_experts_kept_by_the_triton_moe_match_hf(tiny_deepseek_v3_fp8):
    """The experts are FP8 in the checkpoint too (as DeepSeek-V3's): with the Triton linear and MoE
    (interpreter, fp32) they stay e4m3 with their block scales, and the answers are HF's on the
    dequantized weights."""
    quantized, dequantized = tiny_deepseek_v3_fp8
    kw = {"linear_backend": "triton", "moe_backend": "triton", "block_size": 8}
    with LLM(str(quantized), num_kv_blocks=16, **kw) as llm:
        moe = llm.runner.model.moe_layers()
        assert moe and all(m.spec.quant == "fp8_block" and m.w13.dtype == torch.float8_e4m3fn for m in moe)
    assert_greedy_matches_hf(quantized, prompts(), N, reference=dequantized, **kw)
