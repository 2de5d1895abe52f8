"""Lookahead (async scheduling): each step is launched before the host reads the tokens the step before
it drew. The tokens must be exactly those of reading every step at once, whatever ends a request (its
length, a stop token, an abort), with chunked prefills beside decode rows, sampling with seeds,
penalties and logprobs, and preemption. Checked on a small random Llama on the CPU, the same core code a
GPU runs (there the markers are filled inside the decode graphs). tests/parallel runs tensor parallelism
with it on, the default (rank 0 broadcasts the drawn tokens to the workers)."""

from __future__ import annotations

from collections import defaultdict

import pytest

from atom.config import EngineConfig
from atom.engine.core import EngineCore
from atom.sampling_params import SamplingParams


def _prompt(seed: int, length: int) -> list[int]:
    return [(seed * 7919 + 31 * j) % 1000 + 5 for j in range(length)]


def _run(model, requests, lookahead: bool, abort_after: dict[str, int] | None = None, **config):
    """{request: tokens}, {request: finish reason}, {request: logprobs}, steps that left tokens unread,
    the core's preemptions."""
    core = EngineCore(EngineConfig(str(model), async_scheduling=lookahead, seed=0, **config))
    for rid, ids, params in requests:
        core.add(rid, ids, params)
    tokens, reasons, logprobs = defaultdict(list), {}, defaultdict(list)
    unread = 0
    while core.has_unfinished():
        for out in core.step():
            tokens[out.request_id] += out.new_token_ids
            logprobs[out.request_id] += [(lp.token_id, round(lp.logprob, 4)) for lp in out.logprobs or ()]
            if out.finish_reason:
                reasons[out.request_id] = out.finish_reason
        unread += core.pending is not None
        for rid, n in (abort_after or {}).items():
            if len(tokens[rid]) >= n and rid not in reasons:
                core.abort(rid)
                reasons[rid] = "abort"
    return dict(tokens), reasons, dict(logprobs), unread, core.scheduler.num_preemptions


@pytest.fixture(scope="module")
def stop_token(tiny_llama) -> int:
    """A token the first request draws as its 4th: a stop id ends it there, a step before the host knew."""
    tokens, *_ = _run(tiny_llama, [("a", _prompt(1, 20), SamplingParams(max_tokens=8, temperature=0))], False)
    return tokens["a"][3]


def _requests(stop_token: int) -> list:
    greedy = SamplingParams(max_tokens=12, temperature=0)
    return [
        ("a", _prompt(1, 20), greedy),
        ("stops", _prompt(1, 20), SamplingParams(max_tokens=12, temperature=0, stop_token_ids=[stop_token])),
        ("one", _prompt(2, 9), SamplingParams(max_tokens=1, temperature=0)),
        ("two", _prompt(3, 17), SamplingParams(max_tokens=2, temperature=0)),
        ("seeded", _prompt(4, 33), SamplingParams(max_tokens=10, temperature=0.9, seed=7, logprobs=3)),
        ("penalised", _prompt(5, 12), SamplingParams(max_tokens=9, temperature=0, repetition_penalty=1.5)),
        ("long", _prompt(6, 90), SamplingParams(max_tokens=6, temperature=0, logprobs=2)),
        ("late", _prompt(7, 25), SamplingParams(max_tokens=11, temperature=0, min_tokens=5)),
    ]


def test_lookahead_draws_the_same_tokens_as_reading_every_step(tiny_llama, stop_token):
    requests = _requests(stop_token)
    config = dict(max_num_batched_tokens=40, max_num_seqs=8)  # the long prompt comes in chunks
    sync = _run(tiny_llama, requests, False, **config)
    ahead = _run(tiny_llama, requests, True, **config)
    assert sync[0] == ahead[0] and sync[1] == ahead[1] and sync[2] == ahead[2]
    assert sync[1]["stops"] == "stop" and sync[0]["stops"][-1] == stop_token and len(sync[0]["stops"]) == 4
    assert len(sync[0]["one"]) == 1 and len(sync[0]["a"]) == 12
    assert len(ahead[2]["seeded"]) == 10 and len(ahead[2]["long"]) == 6
    assert sync[3] == 0 and ahead[3] > 5  # steps that left their tokens on the device for the next one


def test_lookahead_with_aborts_and_preemption(tiny_llama, stop_token):
    """A request aborted while its token is unread loses nothing else; a KV cache too small for every
    request preempts some (their prompts then recomputed with the tokens read back)."""
    requests = [
        (f"r{i}", _prompt(10 + i, 30 + 3 * i), SamplingParams(max_tokens=14, temperature=0)) for i in range(6)
    ]
    config = dict(num_kv_blocks=6, block_size=16, max_num_seqs=6, enable_prefix_caching=True)
    sync = _run(tiny_llama, requests, False, abort_after={"r2": 3}, **config)
    ahead = _run(tiny_llama, requests, True, abort_after={"r2": 3}, **config)
    assert sync[4] > 0 and ahead[4] > 0, "the cache was meant to be too small"
    assert ahead[3] > 0
    assert sync[1] == ahead[1] and sync[1]["r2"] == "abort"
    for rid, tokens in sync[0].items():
        if rid == "r2":  # stopped after 3 tokens: lookahead may have drawn one more, never read
            assert ahead[0][rid] == tokens[: len(ahead[0][rid])] and len(ahead[0][rid]) >= 3
        else:
            assert ahead[0][rid] == tokens and len(tokens) == 14
