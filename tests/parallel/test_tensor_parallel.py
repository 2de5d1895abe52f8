"""Tensor parallelism on the CPU (gloo): N ranks give the tokens one rank gives and HF transformers gives.

Each LLM here starts N-1 real worker processes; the collectives are real gloo all-reduces and gathers.
Tolerance as in the single-rank numerics tests: fp32 on both sides, only the summation order differs
(the all-reduce adds the ranks' partial sums), so logprobs agree to 1e-3 and tokens exactly.
"""

from __future__ import annotations

import pytest
import torch

from atom import LLM, SamplingParams
from atom.errors import ModelLoadError

from ..engine.hf_reference import assert_greedy_matches_hf

N = 12


def prompts(vocab: int) -> list[list[int]]:
    """Lengths 4, 19 and 41; the third starts with the second (the prefix cache serves its start)."""
    g = torch.Generator().manual_seed(3)
    short, middle, tail = (torch.randint(3, vocab, (n,), generator=g).tolist() for n in (4, 19, 22))
    return [short, middle, middle + tail]


def check_against_hf(folder, tp: int, mxfp4: bool = False, **kwargs) -> None:
    ids = prompts(49152)  # ids the shared tokenizer can also print
    assert_greedy_matches_hf(folder, ids, N, mxfp4=mxfp4, tensor_parallel_size=tp, **kwargs)


def test_smollm2_over_three_ranks_matches_hf(smollm2):
    """9 query heads, 3 K/V heads, 1536 MLP: three ranks of 3 / 1 / 512; chunked prefill and the
    prefix cache on."""
    check_against_hf(smollm2, 3, max_num_batched_tokens=32, block_size=4)


@pytest.mark.parametrize(
    "family", ["llama", "llama_biased", "mixtral", "gpt_oss", "qwen3_moe", "deepseek_v3"]
)
def test_two_ranks_match_hf(family, request):
    """llama: one K/V head replicated on both ranks, vocab 49157 padded to 49158; llama_biased: the same
    with random q/k/v and o biases (the o_proj bias added once, not on every rank); mixtral: bf16 experts split on I (gate and up halves each); gpt-oss: MXFP4 experts split on
    32-value blocks, sinks split with their heads, w2 bias added once; qwen3-moe: per-head q/k norms
    with split heads, a dense layer next to MoE ones; deepseek-v3: MLA heads split (the latent cache
    whole on each rank), routed and shared experts split on I."""
    folder = request.getfixturevalue(f"tiny_{family}")
    check_against_hf(folder, 2, mxfp4=family == "gpt_oss", block_size=8, max_num_batched_tokens=48)


@pytest.mark.parametrize(
    ("model", "tp", "message"),
    [
        ("smollm2", 2, "does not divide the model's 9 attention heads"),
        ("tiny_gpt_oss", 4, "MoE intermediate size (64 = 2 blocks of 32)"),
        ("tiny_mixtral", 128, "does not divide the model's 4 attention heads"),
    ],
)
def test_unsplittable_models_are_refused_before_any_worker_starts(model, tp, message, request):
    folder = request.getfixturevalue(model)
    with pytest.raises(ModelLoadError, match=message.replace("(", r"\(").replace(")", r"\)")):
        LLM(str(folder), tensor_parallel_size=tp)


def test_kv_heads_neither_dividing_nor_divided_are_refused(tiny_llama, tmp_path):
    import json
    import shutil

    from atom.config import ParallelConfig
    from atom.models.loader import check_shards

    shutil.copy(tiny_llama / "config.json", tmp_path / "config.json")
    config = json.loads((tmp_path / "config.json").read_text())
    config.update(num_attention_heads=6, num_key_value_heads=3, head_dim=16)
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelLoadError, match="tensor parallelism 2 and the model's 3 key/value heads"):
        check_shards(tmp_path, ParallelConfig(tp_size=2))
    check_shards(tmp_path, ParallelConfig(tp_size=3))  # 3 ranks of 2 query heads and 1 K/V head
    check_shards(tmp_path, ParallelConfig(tp_size=6))  # 6 ranks, each K/V head on two of them


def test_random_dummy_weights_are_the_same_model_at_any_size(tiny_gpt_oss):
    """Benchmarks compare sizes on random weights: each tensor is drawn whole, then sharded."""
    ids = prompts(49152)
    params = SamplingParams(max_tokens=N, temperature=0, ignore_eos=True)
    tokens = []
    for tp in (1, 2):
        with LLM(str(tiny_gpt_oss), load_format="dummy", seed=5, tensor_parallel_size=tp) as llm:
            tokens.append([o.output_token_ids for o in llm.generate(ids, params)])
    assert tokens[0] == tokens[1]


def test_fp8_deepseek_over_two_ranks_keeps_fp8_slices_and_matches_hf(tiny_deepseek_v3_fp8_16):
    """FP8 under tensor parallelism (what DeepSeek-V3 at 8 ranks needs: dequantized, it no longer fits):
    each rank keeps its block-aligned slice of the FP8 projections and experts with their scales
    (Triton linear and MoE, interpreter), and the answers are HF's on the dequantized weights."""
    quantized, dequantized = tiny_deepseek_v3_fp8_16
    kw = {"linear_backend": "triton", "moe_backend": "triton", "block_size": 8}
    with LLM(str(quantized), tensor_parallel_size=2, num_kv_blocks=32, **kw) as llm:
        model = llm.runner.model
        q_b = model.attention_layers()[0].q_b_proj
        assert q_b.weight.dtype == torch.float8_e4m3fn and q_b.weight.shape[0] == 2 * 24  # 2 of 4 heads
        assert all(m.spec.quant == "fp8_block" for m in model.moe_layers())
    assert_greedy_matches_hf(
        quantized, prompts(49152), N, reference=dequantized, tensor_parallel_size=2, **kw
    )
