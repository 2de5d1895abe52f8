"""Offline throughput: all requests submitted at once to LLM.generate."""

from __future__ import annotations

import time
from pathlib import Path

from ..engine.llm_engine import LLM
from ..sampling_params import SamplingParams
from .workload import random_prompts


def run_offline(
    model: Path,
    num_prompts: int,
    input_len: int,
    output_len: int,
    load_format: str,
    max_num_seqs: int,
    seed: int,
    kv_cache_memory_gb: float | None = None,
) -> dict:
    extra = {"kv_cache_memory_gb": kv_cache_memory_gb} if kv_cache_memory_gb else {}
    llm = LLM(str(model), load_format=load_format, max_num_seqs=max_num_seqs, **extra)
    prompts = random_prompts(llm.runner.model.args.vocab_size, num_prompts, input_len, seed)
    params = SamplingParams(max_tokens=output_len, temperature=0, ignore_eos=True)
    llm.warm_up()  # the same warm-up the server runs before it says healthy
    for p in prompts:
        llm.add_request(p, params)
    start, steps, tokens = time.perf_counter(), 0, 0
    while llm.has_unfinished():
        tokens += sum(len(o.delta_token_ids) for o in llm.step())
        steps += 1
    elapsed = time.perf_counter() - start
    return {
        "max_num_seqs": max_num_seqs,
        "steps": steps,
        "mean_step_ms": round(elapsed / max(steps, 1) * 1000, 3),
        "num_prompts": num_prompts,
        "input_len": input_len,
        "output_len": output_len,
        "elapsed_s": round(elapsed, 3),
        "output_tokens": tokens,
        "output_throughput_tok_s": round(tokens / elapsed, 2),
        "request_throughput_req_s": round(num_prompts / elapsed, 3),
    }
