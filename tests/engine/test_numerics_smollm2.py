"""The engine against HF transformers on SmolLM2-135M-Instruct's real weights (CPU, fp32)."""

from __future__ import annotations

import pytest

from atom import LLM, SamplingParams

from .hf_reference import greedy, load_hf

PROMPTS = [
    "What is the capital of France?",
    "The quick brown fox",
    "def fibonacci(n):",
    "Once upon a time, in a small village by the sea,",
    "List three primary colors:",
    "Water boils at",
    "The meaning of life is a question that has puzzled philosophers for centuries. Some say",
    "1, 2, 3, 4,",
    "Translate to French: Good morning, how are you?",
]
N = 32


@pytest.fixture(scope="module")
def reference(smollm2):
    hf = load_hf(smollm2)
    llm = LLM(str(smollm2), num_kv_blocks=64)
    ids = [llm.tokenizer.encode(p) for p in PROMPTS]
    return ids, [greedy(hf, p, N)[0] for p in ids]


def run(smollm2, ids, **kwargs) -> list[list[int]]:
    llm = LLM(str(smollm2), **kwargs)
    outs = llm.generate(ids, SamplingParams(max_tokens=N, temperature=0, ignore_eos=True))
    return [o.output_token_ids for o in outs], llm


@pytest.mark.parametrize(
    "kwargs",
    [
        {"enable_prefix_caching": False},
        {"enable_prefix_caching": True},
        {"block_size": 2, "num_kv_blocks": 2048},  # many blocks per sequence
        {"max_num_batched_tokens": 24, "enable_prefix_caching": False},  # chunked prefill
    ],
    ids=["batched", "prefix-cache", "block-size-2", "chunked-prefill"],
)
def test_greedy_matches_hf(smollm2, reference, kwargs):
    ids, expected = reference
    got, _ = run(smollm2, ids, **kwargs)
    for prompt, e, g in zip(PROMPTS, expected, got, strict=True):
        assert g == e, (
            f"prompt {prompt!r} diverged at token {next(i for i, (a, b) in enumerate(zip(e, g)) if a != b)}"
        )


def test_prefix_cache_hits_and_still_matches(smollm2, reference):
    ids, expected = reference
    shared = ids[6]  # the long prompt, twice: the second run must hit the cache
    llm = LLM(str(smollm2), block_size=4)
    first = llm.generate([shared], SamplingParams(max_tokens=N, temperature=0, ignore_eos=True))[0]
    second = llm.generate([shared], SamplingParams(max_tokens=N, temperature=0, ignore_eos=True))[0]
    assert second.num_cached_tokens >= len(shared) - 4
    assert first.output_token_ids == second.output_token_ids == expected[6]


def test_chat_answer_is_sensible(smollm2):
    llm = LLM(str(smollm2))
    prompt = llm.tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}]
    )
    out = llm.generate([prompt], SamplingParams(max_tokens=24, temperature=0))[0]
    assert "Paris" in out.text
    assert out.finish_reason == "stop"
