"""Whole models: the Triton backends generate the same greedy tokens as the torch reference.

On the CPU the Triton kernels run in Triton's interpreter (set up in conftest); on a GPU they run compiled.
"""

from __future__ import annotations

import pytest
import torch

from atom import LLM, SamplingParams

N = 12


def prompts(vocab: int) -> list[list[int]]:
    g = torch.Generator().manual_seed(7)
    return [torch.randint(3, vocab, (n,), generator=g).tolist() for n in (3, 21, 40)]  # 21, 40 > window 16


def greedy_tokens(folder, ids, **backends) -> list[list[int]]:
    llm = LLM(str(folder), block_size=4, max_num_batched_tokens=32, **backends)  # chunked prefill too
    outs = llm.generate(ids, SamplingParams(max_tokens=N, temperature=0, ignore_eos=True))
    chosen = {name: sel.name for name, sel in llm.runner.selections.items()}
    return [o.output_token_ids for o in outs], chosen


@pytest.mark.parametrize(
    "family, backends",
    [
        ("gpt_oss", {"moe_backend": "triton"}),
        ("gpt_oss", {"attention_backend": "triton"}),
        ("mixtral", {"moe_backend": "triton", "attention_backend": "triton"}),
        ("qwen3_moe", {"moe_backend": "triton", "attention_backend": "triton"}),
        ("deepseek_v3", {"moe_backend": "triton"}),  # sigmoid grouped routing before our kernels
        ("deepseek_v3", {"attention_backend": "triton"}),  # MLA as one-head attention on our kernel
    ],
)
def test_triton_backends_match_torch(family, backends, request):
    folder = request.getfixturevalue(f"tiny_{family}")
    vocab = LLM(str(folder), num_kv_blocks=16).runner.model.args.vocab_size
    ids = prompts(vocab)
    reference, ref_chosen = greedy_tokens(folder, ids, moe_backend="torch", attention_backend="torch")
    ours, chosen = greedy_tokens(folder, ids, **backends)
    option = {"attention": "attention_backend", "mla": "attention_backend", "moe": "moe_backend"}
    forced = {backends.get(option[k.split()[0]]) for k in chosen} - {None}
    assert set(chosen.values()) - {"torch"} == forced  # the forced backends really ran
    assert set(ref_chosen.values()) == {"torch"}
    assert ours == reference


def test_llama_triton_attention_matches_torch(smollm2):
    llm = LLM(str(smollm2), num_kv_blocks=16)
    ids = [llm.tokenizer.encode(p) for p in ("What is the capital of France?", "1, 2, 3, 4,")]
    reference, _ = greedy_tokens(smollm2, ids, attention_backend="torch")
    ours, chosen = greedy_tokens(smollm2, ids, attention_backend="triton")
    assert set(chosen.values()) == {"triton"}
    assert ours == reference
