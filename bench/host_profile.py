"""Where rank 0's host time goes in a batch-1 decode step (GPU): cProfile over decode steps of a gpt-oss
shape with random weights, functions by their own time. The GPU wait shows up in the call that syncs
(the sampler's token read); the rest is host work the step serialises with its kernels.

Usage on the GPU machine: PYTHONPATH=engine python bench/host_profile.py [--shape gpt-oss-20b] [--tp 1]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from pathlib import Path

import torch

from atom import LLM, SamplingParams
from atom.bench.shapes import write_shape
from atom.bench.workload import random_prompts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="gpt-oss-20b")
    parser.add_argument("--tp", type=int, default=1)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    folder = write_shape(args.shape, Path(tempfile.mkdtemp()) / args.shape)
    llm = LLM(
        str(folder), load_format="dummy", tensor_parallel_size=args.tp, max_num_seqs=8, kv_cache_memory_gb=4
    )
    params = SamplingParams(max_tokens=2 * args.steps + 40, temperature=0, ignore_eos=True)
    llm.add_request(random_prompts(llm.runner.model.args.vocab_size, 1, 128, 0)[0], params)
    for _ in range(20):
        llm.step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        llm.step()
    print(f"wall per step, no profiler: {(time.perf_counter() - start) / args.steps * 1e6:.0f} us")
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(args.steps):
        llm.step()
    profiler.disable()
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(28)
    stats.sort_stats("cumulative").print_stats(16)
    graph = llm.runner.graphs.graphs[1]  # the batch-1 graph alone: what launching it costs the host
    torch.cuda.synchronize()
    for label, sync in (("back to back", False), ("each from idle", True)):
        start = time.perf_counter()
        cpu = 0.0
        for _ in range(50):
            t = time.perf_counter()
            graph.replay()
            cpu += time.perf_counter() - t
            if sync:
                torch.cuda.synchronize()
        torch.cuda.synchronize()
        print(
            f"batch-1 graph replay, {label}: {cpu / 50 * 1e6:.0f} us in replay() on the host, "
            f"{(time.perf_counter() - start) / 50 * 1e6:.0f} us per replay in all"
        )
    llm.close()


if __name__ == "__main__":
    main()
