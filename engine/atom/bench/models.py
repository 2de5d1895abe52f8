"""Offline decode throughput on a published model shape with random weights (DeepSeek-V3 with FP8
projections, Qwen3-30B-A3B, ...), cut to a few layers so one GPU holds it, with HF transformers on the
same shape and weights in bf16 first, in the same process (HF freed before ours loads)."""

from __future__ import annotations

import gc
import json
import tempfile
import time
from pathlib import Path

import torch

from ..engine.llm_engine import LLM
from ..sampling_params import SamplingParams
from .shapes import write_shape
from .workload import random_prompts


def hf_decode(
    folder: Path, batch: int, prompt_len: int, new_tokens: int, seed: int, attention: str | None = None
) -> dict:
    """HF transformers' greedy decode tok/s on the shape in `folder` (random bf16 weights: the quantization
    config dropped, so HF holds every weight in bf16 as its eager path runs them). attention: HF's
    attention implementation, where the model needs one (gpt-oss's sinks: eager)."""
    from transformers import AutoConfig, AutoModelForCausalLM

    config = json.loads((folder / "config.json").read_text())
    config.pop("quantization_config", None)
    hf_config = AutoConfig.for_model(**config)
    if attention:
        hf_config._attn_implementation = attention
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(hf_config, torch_dtype=torch.bfloat16).eval()
    ids = torch.tensor(random_prompts(config["vocab_size"], batch, prompt_len, seed), device="cuda")
    kw = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False}
    model.generate(ids[:, :8], max_new_tokens=2, do_sample=False)  # warm-up
    torch.cuda.synchronize()
    start = time.perf_counter()
    model.generate(ids, **kw)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    del model
    gc.collect()
    torch.cuda.empty_cache()
    return {"engine": "hf-transformers", "batch": batch, "tok_s": round(batch * new_tokens / elapsed, 1)}


def ours_generate(llm: LLM, num: int, prompt_len: int, new_tokens: int, seed: int) -> float:
    prompts = random_prompts(llm.runner.model.args.vocab_size, num, prompt_len, seed)
    params = SamplingParams(max_tokens=new_tokens, temperature=0, ignore_eos=True)
    torch.cuda.synchronize()
    start = time.perf_counter()
    outs = llm.generate(prompts, params)
    torch.cuda.synchronize()
    assert all(len(o.output_token_ids) == new_tokens for o in outs)
    return num * new_tokens / (time.perf_counter() - start)


def run_model_bench(
    shape: str, layers: int, batches: list[int], with_hf: bool, emit=print, seed: int = 0, **engine_kwargs
) -> list[dict]:
    """Decode tok/s (128-token prompts, 64 new tokens) at each batch size, ours next to HF's."""
    folder = write_shape(shape, Path(tempfile.mkdtemp()) / shape, layers)
    rows = []
    if with_hf:
        for b in batches:
            rows.append(hf_decode(folder, b, 128, 64, seed) | {"shape": f"{shape} x {layers} layers"})
            emit(rows[-1])
    start = time.perf_counter()
    llm = LLM(
        str(folder), load_format="dummy", max_num_seqs=max(batches), kv_cache_memory_gb=8, **engine_kwargs
    )
    chosen = {key.split(" ")[0]: sel.name for key, sel in llm.runner.selections.items()}
    emit({"engine": "atom", "backends": chosen, "startup_s": round(time.perf_counter() - start, 1)})
    for b in batches:
        ours_generate(llm, b, 128, 2, seed + 1)  # this prefill shape's kernels compile untimed
        tok_s = ours_generate(llm, b, 128, 64, seed)
        row = {"engine": "atom", "shape": f"{shape} x {layers} layers", "batch": b, "tok_s": round(tok_s, 1)}
        hf = next((r for r in rows if r["engine"] == "hf-transformers" and r["batch"] == b), None)
        if hf:
            row["x_hf"] = round(tok_s / hf["tok_s"], 1)
        rows.append(row)
        emit(row)
    llm.close()
    return rows
