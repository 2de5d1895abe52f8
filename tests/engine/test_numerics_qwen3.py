"""Random Qwen3 and Qwen3-MoE checkpoints written by HF itself: the engine against HF transformers.

Same tolerance as the other families (fp32 both sides, only summation order differs): identical greedy
tokens, logprobs within 1e-3. Prompts of several lengths batched together; the last one repeats the
third's start, so with the prefix cache on it is served partly from cache."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from .hf_reference import assert_greedy_matches_hf

N = 16


def prompts() -> list[list[int]]:
    g = torch.Generator().manual_seed(11)
    ids = [torch.randint(3, 49152, (n,), generator=g).tolist() for n in (5, 17, 40)]
    return ids + [ids[2] + ids[1]]


@pytest.mark.parametrize("prefix_caching", [True, False], ids=["prefix-cache", "no-prefix-cache"])
@pytest.mark.parametrize("family", ["qwen3", "qwen3_moe"])
def test_qwen3_families_match_hf(family, prefix_caching, request):
    folder = request.getfixturevalue(f"tiny_{family}")
    assert_greedy_matches_hf(
        folder, prompts(), N, block_size=8, enable_prefix_caching=prefix_caching, max_num_batched_tokens=40
    )


def test_qwen3_moe_without_renormalised_top_k_matches_hf(tiny_qwen3_moe, tmp_path):
    """norm_topk_prob false: the k softmax weights are used as they are (another routing kind)."""
    for f in tiny_qwen3_moe.iterdir():
        shutil.copy(f, tmp_path / f.name)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "norm_topk_prob": False}))
    assert_greedy_matches_hf(tmp_path, prompts(), N, block_size=8)
