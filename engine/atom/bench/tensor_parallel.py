"""Tensor parallelism on a gpt-oss shape with random MXFP4 weights: decode tok/s at each size, the
all-reduce time inside a decode step, and greedy agreement between sizes in fp32 (same random model at
every size: dummy weights are drawn whole, then sharded)."""

from __future__ import annotations

import gc
import json
import tempfile
import time
from pathlib import Path

import torch

from ..engine.llm_engine import LLM
from ..sampling_params import SamplingParams
from .models import ours_generate
from .profile import kernel_table
from .shapes import write_shape
from .workload import random_prompts

COLLECTIVE = ("nccl", "allreduce", "all_reduce", "allgather", "all_gather")  # _allreduce_kernel: ours


def decode_profile(llm: LLM, batch: int, steps: int = 20) -> dict:
    """Rank 0's decode step at `batch`: its wall time, its kernels' total, the collectives' share (our
    one-shot all-reduce's kernel included) and the largest kernels."""
    params = SamplingParams(max_tokens=4 * steps + 8, temperature=0, ignore_eos=True)
    for p in random_prompts(llm.runner.model.args.vocab_size, batch, 128, 7):
        llm.add_request(p, params)
    for _ in range(steps):
        llm.step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        llm.step()
    wall_us = (time.perf_counter() - start) / steps * 1e6
    rows = kernel_table(llm.step, steps, "cuda")
    while llm.has_unfinished():
        llm.step()
    collective = [r for r in rows if any(c in r["name"].lower() for c in COLLECTIVE)]
    return {
        "wall_us_per_step": round(wall_us, 1),
        "kernel_us_per_step": round(sum(r["us_per_step"] for r in rows), 1),
        "collective_us_per_step": round(sum(r["us_per_step"] for r in collective), 1),
        "collective_calls_per_step": sum(r["calls"] for r in collective),
        "top_kernels": [f"{r['us_per_step']:.0f} us {r['calls']}x {r['name'][:60]}" for r in rows[:10]],
    }


def _release() -> None:
    gc.collect()
    torch.cuda.empty_cache()


def run_tp_bench(
    shape: str, sizes: list[int], batches: list[int], emit=print, agree_layers: int = 4, seed: int = 0
) -> list[dict]:
    folder = write_shape(shape, Path(tempfile.mkdtemp()) / shape)
    rows = []
    for tp in sizes:
        start = time.perf_counter()
        llm = LLM(
            str(folder),
            load_format="dummy",
            tensor_parallel_size=tp,
            max_num_seqs=max(batches),
            kv_cache_memory_gb=8,
            seed=seed,
        )
        startup = round(time.perf_counter() - start, 1)
        for batch in batches:
            ours_generate(llm, batch, 128, 2, seed + 1)  # this prefill shape's kernels, untimed
            tok_s = ours_generate(llm, batch, 128, 128, seed)
            row = {
                "shape": shape,
                "tp": tp,
                "batch": batch,
                "decode_tok_s": round(tok_s, 1),
                "startup_s": startup,
            }
            row |= decode_profile(llm, batch)
            rows.append(row)
            emit(row)
        llm.close()
        del llm  # before the next size loads: both would not fit
        _release()
    rows.append(agreement(shape, sizes, agree_layers, seed))
    emit(rows[-1])
    return rows


def agreement(shape: str, sizes: list[int], layers: int, seed: int) -> dict:
    """Greedy tokens in fp32 at each size on the same random weights (the first `layers` layers)."""
    folder = write_shape(shape, Path(tempfile.mkdtemp()) / shape, layers)
    vocab = json.loads((folder / "config.json").read_text())["vocab_size"]
    prompts = random_prompts(vocab, 8, 300, seed)
    params = SamplingParams(max_tokens=32, temperature=0, ignore_eos=True)
    tokens = {}
    for tp in sizes:
        llm = LLM(str(folder), load_format="dummy", dtype="float32", tensor_parallel_size=tp, seed=seed)
        tokens[tp] = [o.output_token_ids for o in llm.generate(prompts, params)]
        llm.close()
        del llm
        _release()
    base = tokens[sizes[0]]
    same = {
        f"tp{tp}_vs_tp{sizes[0]}": f"{sum(a == b for a, b in zip(base, tokens[tp], strict=True))}/{len(base)}"
        for tp in sizes[1:]
    }
    return {"agreement": f"{shape} x {layers} layers, fp32, 8 prompts x 32 greedy tokens", **same}
