"""Random gpt-oss (MXFP4 experts) and Mixtral checkpoints: the engine against HF transformers.

Tolerance: both sides run fp32 on identical (dequantized) weights; they differ only in summation order
(batched einsum vs per-head matmul, expert scatter order), which leaves ~1e-5 relative error. We allow
1e-3 of the logit scale, far below the gaps greedy decisions depend on, and require identical tokens.
"""

from __future__ import annotations

import pytest
import torch

from atom import LLM, SamplingParams

from .hf_reference import assert_greedy_matches_hf, load_hf, prompt_logits

N = 24


def prompts(vocab: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(1)
    lengths = [5, 17, 40, 64]  # 40 and 64 exceed the test model's 16-token sliding window
    return [torch.randint(3, vocab, (n,), generator=g).tolist() for n in lengths]


@pytest.mark.parametrize("family", ["gpt_oss", "mixtral"])
def test_moe_family_matches_hf(family, tiny_gpt_oss, tiny_mixtral):
    folder = tiny_gpt_oss if family == "gpt_oss" else tiny_mixtral
    ids = prompts(49152)
    # chunked prefill too
    assert_greedy_matches_hf(
        folder, ids, N, mxfp4=family == "gpt_oss", block_size=4, max_num_batched_tokens=48
    )


def test_gpt_oss_prefill_logits_match_hf(tiny_gpt_oss):
    hf = load_hf(tiny_gpt_oss, mxfp4=True)
    llm = LLM(str(tiny_gpt_oss), block_size=8)
    ids = prompts(hf.config.vocab_size)[3]
    ref = prompt_logits(hf, ids)[-1]
    from atom.engine.scheduler import ScheduledBatch

    seq = llm.add_request(ids, SamplingParams(max_tokens=1))
    batch = llm.scheduler.schedule()
    assert isinstance(batch, ScheduledBatch) and batch.seqs == [seq]
    ours = llm.runner.run(batch)[0]
    scale = ref.abs().max()
    assert (ours - ref).abs().max() <= 1e-3 * scale
