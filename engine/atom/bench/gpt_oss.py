"""Offline engine throughput on a gpt-oss-shaped model with random MXFP4 weights, with HF transformers on the
same shape in the same process for the ratio (HF first, then freed, so both fit one GPU)."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import torch

from ..engine.llm_engine import LLM
from ..sampling_params import SamplingParams
from .models import hf_decode, ours_generate
from .profile import kernel_table, print_kernel_table
from .shapes import write_shape
from .workload import random_prompts


def run_gpt_oss_bench(
    shape: str, with_hf: bool, engine_kwargs: dict, emit=print, seed: int = 0, profile: bool = False
) -> list[dict]:
    """Rows are emitted as they come (a long run cut short still reports what it measured)."""
    folder = write_shape(shape, Path(tempfile.mkdtemp()) / shape)
    rows = []
    if with_hf:
        for b in (1, 16):
            rows.append(hf_decode(folder, b, 128, 64, seed, attention="eager"))
            emit(rows[-1])
    start = time.perf_counter()
    llm = LLM(str(folder), load_format="dummy", max_num_seqs=256, kv_cache_memory_gb=16, **engine_kwargs)
    emit({"engine": "atom", "startup_s (load + graph capture)": round(time.perf_counter() - start, 1)})
    chosen = sorted({sel.name for sel in llm.runner.selections.values()})
    for batch in (1, 16):
        ours_generate(llm, batch, 128, 2, seed + 1)  # compile this prefill shape's kernels untimed
        tok_s = ours_generate(llm, batch, 128, 64, seed)
        rows.append({"engine": "atom", "backends": chosen, "batch": batch, "tok_s": round(tok_s, 1)})
        hf = next((r for r in rows if r["engine"] == "hf-transformers" and r["batch"] == batch), None)
        if hf:
            rows[-1]["x_hf"] = round(tok_s / hf["tok_s"], 1)
        emit(rows[-1])
    if profile:
        for batch in (1, 16):
            rows.append(profile_decode(llm, batch, 20, seed))
            emit({k: v for k, v in rows[-1].items() if k != "top"})
    ours_generate(llm, 16, 512, 2, seed + 1)
    tok_s = ours_generate(llm, 256, 512, 256, seed)
    rows.append({"engine": "atom", "backends": chosen, "requests": "256 x (512 in + 256 out)", "tok_s": round(tok_s, 1)})  # fmt: skip
    emit(rows[-1])
    return rows


def profile_decode(llm: LLM, batch: int, steps: int, seed: int = 0) -> dict:
    """Kernel time per decode step at `batch` next to the step's wall time: the gap is host time."""
    prompts = random_prompts(llm.runner.model.args.vocab_size, batch, 128, seed)
    params = SamplingParams(max_tokens=3 * steps + 8, temperature=0, ignore_eos=True)
    for p in prompts:
        llm.add_request(p, params)
    for _ in range(steps):  # prefill, then decode steps to settle
        llm.step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        llm.step()
    torch.cuda.synchronize()
    wall_us = (time.perf_counter() - start) / steps * 1e6
    rows = kernel_table(llm.step, steps, "cuda")
    while llm.has_unfinished():
        llm.step()
    print_kernel_table(f"decode step, batch {batch}, wall {wall_us:.0f} us", rows)
    kernels_us = sum(r["us_per_step"] for r in rows)
    return {"profile": f"decode batch {batch}", "wall_us_per_step": round(wall_us, 1),
            "kernel_us_per_step": round(kernels_us, 1), "top": rows[:15]}  # fmt: skip


def greedy_agreement(shape: str, num_layers: int, dtype: str, backends: dict, seed: int = 0) -> dict:
    """Same random weights, same prompts: greedy tokens with the torch reference vs the given backends."""
    folder = write_shape(shape, Path(tempfile.mkdtemp()) / shape, num_layers)
    config = json.loads((folder / "config.json").read_text())
    # longer than the 128-token window; 7: decode replays the 8-row graph with a padding row
    prompts = random_prompts(config["vocab_size"], 7, 300, seed)
    params = SamplingParams(max_tokens=32, temperature=0, ignore_eos=True)
    tokens = {}
    for name, kw in {
        "torch": {"moe_backend": "torch", "attention_backend": "torch"},
        "ours": backends,
    }.items():
        llm = LLM(str(folder), load_format="dummy", dtype=dtype, seed=seed, **kw)
        tokens[name] = [o.output_token_ids for o in llm.generate(prompts, params)]
        del llm
        torch.cuda.empty_cache()
    pairs = list(zip(tokens["torch"], tokens["ours"], strict=True))
    same = sum(a == b for a, b in pairs)
    agreed = [next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), len(a)) for a, b in pairs]
    return {"shape": f"{shape} x {num_layers} layers", "dtype": dtype, "backends": backends,
            "identical_sequences": f"{same}/{len(prompts)}",
            "tokens_before_first_difference": agreed}  # fmt: skip
