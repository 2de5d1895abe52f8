"""Async scheduling (engine/core.py's lookahead) on and off in one engine, one run: decode tok/s, wall us
a decode step, and whether the greedy tokens are the same (they must be: the same kernels run the same
rows). gpt-oss shape with random MXFP4 weights, on the GPU; 128-token prompts unless told.

Usage: python bench/lookahead_ab.py [--shape gpt-oss-20b] [--batch 1 --batch 16 ...] [--json-out F]"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from atom import LLM, SamplingParams
from atom.bench.shapes import write_shape
from atom.bench.workload import random_prompts


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def generate(
    llm: LLM, lookahead: bool, prompts: list[list[int]], new_tokens: int, sampled: bool = False
) -> tuple[float, list]:
    """(tok/s, the output token ids) with lookahead on or off; sampled: temperature 0.8, top-p 0.95, a
    seed per request and one logprob (the sampler's host-to-device copies), else greedy."""
    llm.core.lookahead = lookahead
    params = [
        SamplingParams(
            max_tokens=new_tokens, ignore_eos=True, temperature=0.8, top_p=0.95, seed=i, logprobs=1
        )
        if sampled
        else SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True)
        for i in range(len(prompts))
    ]
    sync()
    start = time.perf_counter()
    outs = llm.generate(prompts, params)
    sync()
    seconds = time.perf_counter() - start
    return len(prompts) * new_tokens / seconds, [o.output_token_ids for o in outs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="gpt-oss-20b")
    parser.add_argument("--batch", type=int, action="append", default=[])
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--sampled", action="store_true", help="seeded sampling with logprobs, not greedy")
    parser.add_argument("--layers", type=int, default=None, help="fewer layers than the shape's")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args()
    folder = write_shape(args.shape, Path(tempfile.mkdtemp()) / args.shape, args.layers)
    # no prefix cache: every run prefills its prompts (the runs repeat them)
    llm = LLM(
        str(folder), load_format="dummy", max_num_seqs=256, kv_cache_memory_gb=16, enable_prefix_caching=False
    )
    vocab = llm.runner.model.args.vocab_size
    rows = []
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    how = "sampled (seeded, logprobs)" if args.sampled else "greedy"
    print(f"{args.shape}, {device}, {args.prompt_len} in / {args.new_tokens} out, {how}, best of 2")
    print("| batch | lookahead | tok/s | us a step | same tokens |\n|---:|---|---:|---:|---|")
    for batch in args.batch or [1, 16, 64]:
        prompts = random_prompts(vocab, batch, args.prompt_len, 0)
        generate(llm, True, prompts, 4)  # this batch's prefill and graph, untimed
        best: dict[bool, float] = {}
        tokens: dict[bool, list] = {}
        for _ in range(2):
            for lookahead in (True, False):
                tok_s, tokens[lookahead] = generate(llm, lookahead, prompts, args.new_tokens, args.sampled)
                best[lookahead] = max(best.get(lookahead, 0.0), tok_s)
        same = tokens[True] == tokens[False]
        for lookahead in (True, False):
            row = {
                "batch": batch,
                "lookahead": lookahead,
                "tok_s": round(best[lookahead], 1),
                "us_per_step": round(batch / best[lookahead] * 1e6, 1),
                "same_tokens": same,
                "sampled": args.sampled,
            }
            rows.append(row)
            print(
                f"| {batch} | {'on' if lookahead else 'off'} | {row['tok_s']} | {row['us_per_step']} | {same} |"
            )
    if args.json_out:
        args.json_out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
