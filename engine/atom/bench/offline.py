"""Offline throughput: all requests submitted at once to LLM.generate."""

from __future__ import annotations

import time
from pathlib import Path

from ..engine.llm_engine import LLM
from ..engine.outputs import EngineStats
from ..sampling_params import SamplingParams
from .serve import engine_summary, stats_ms
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
    tensor_parallel_size: int = 1,
    max_num_batched_tokens: int | None = None,
    async_scheduling: bool = True,
) -> dict:
    extra = {"kv_cache_memory_gb": kv_cache_memory_gb} if kv_cache_memory_gb else {}
    if max_num_batched_tokens:
        extra["max_num_batched_tokens"] = max_num_batched_tokens
    llm = LLM(
        str(model),
        load_format=load_format,
        max_num_seqs=max_num_seqs,
        tensor_parallel_size=tensor_parallel_size,
        async_scheduling=async_scheduling,
        **extra,
    )
    prompts = random_prompts(llm.runner.model.args.vocab_size, num_prompts, input_len, seed)
    params = SamplingParams(max_tokens=output_len, temperature=0, ignore_eos=True)
    llm.warm_up()  # the same warm-up the server runs before it says healthy
    llm.core.settle()  # as the server's core process does: this process holds one engine
    for p in prompts:
        llm.add_request(p, params)
    start, steps, tokens = time.perf_counter(), 0, 0
    first: dict[str, float] = {}
    tpot: list[float] = []
    while llm.has_unfinished():
        outputs, now = llm.step(), time.perf_counter()
        for o in outputs:
            tokens += len(o.delta_token_ids)
            first.setdefault(o.request_id, now)
            if o.finished and len(o.output_token_ids) > 1:
                tpot.append((now - first[o.request_id]) / (len(o.output_token_ids) - 1))
        steps += 1
    elapsed = time.perf_counter() - start
    ttft = [t - start for t in first.values()]  # every request was submitted at start
    stats = llm.core.stats()
    llm.close()
    return {
        "tensor_parallel_size": tensor_parallel_size,
        "async_scheduling": async_scheduling,
        "max_num_seqs": max_num_seqs,
        "max_num_batched_tokens": llm.config.max_num_batched_tokens,
        "steps": steps,
        "mean_step_ms": round(elapsed / max(steps, 1) * 1000, 3),
        "num_prompts": num_prompts,
        "input_len": input_len,
        "output_len": output_len,
        "elapsed_s": round(elapsed, 3),
        "output_tokens": tokens,
        "output_throughput_tok_s": round(tokens / elapsed, 2),
        "request_throughput_req_s": round(num_prompts / elapsed, 3),
        "ttft_ms": stats_ms(ttft),
        "tpot_ms": stats_ms(tpot),
        "engine": engine_summary(EngineStats(), stats),
        "compiled_while_running": llm.core.compile_watch.kernels,
    }
