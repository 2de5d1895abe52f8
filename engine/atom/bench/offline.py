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
) -> dict:
    llm = LLM(str(model), load_format=load_format, max_num_seqs=max_num_seqs)
    prompts = random_prompts(llm.runner.model.args.vocab_size, num_prompts, input_len, seed)
    params = SamplingParams(max_tokens=output_len, temperature=0, ignore_eos=True)
    llm.generate(prompts[:2], SamplingParams(max_tokens=4, temperature=0, ignore_eos=True))  # warm-up
    start = time.perf_counter()
    outs = llm.generate(prompts, params)
    elapsed = time.perf_counter() - start
    tokens = sum(len(o.output_token_ids) for o in outs)
    return {
        "num_prompts": num_prompts,
        "input_len": input_len,
        "output_len": output_len,
        "elapsed_s": round(elapsed, 3),
        "output_tokens": tokens,
        "output_throughput_tok_s": round(tokens / elapsed, 2),
        "request_throughput_req_s": round(num_prompts / elapsed, 3),
    }
