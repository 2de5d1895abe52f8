"""Batch-1 (and batch-8) decode attention of the gpt-oss shape (64 query heads, 8 KV heads of 64, sinks)
at growing context, keys in one program per (sequence, KV head) against split over programs
(flash-decoding), timed under CUDA graphs; both checked against each other.

Usage on the GPU machine: PYTHONPATH=engine python bench/attention_splits.py
"""

from __future__ import annotations

import torch

from atom.backends import triton_attention
from atom.backends.spec import AttentionSpec
from atom.bench.moe import time_us
from atom.layers.context import AttentionMetadata

PAGE = 16
GRAPH_MAX_SEQ_LEN = 131072  # gpt-oss's context length


def decode_batch(seqs: int, context: int, spec: AttentionSpec):
    blocks = -(-(context + 1) // PAGE)
    tables = torch.arange(seqs * blocks, device="cuda").view(seqs, blocks)
    shape = (seqs * blocks, PAGE, spec.num_kv_heads, spec.head_dim)
    k_cache = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
    v_cache = torch.randn(shape, device="cuda", dtype=torch.bfloat16)
    ones = torch.ones(seqs, dtype=torch.long, device="cuda")
    positions = torch.full((seqs,), context, device="cuda")
    slots = tables[:, context // PAGE] * PAGE + context % PAGE
    meta = AttentionMetadata(positions, slots, torch.arange(seqs, device="cuda"),
                             torch.arange(seqs + 1, device="cuda"), ones, positions + 1, tables, 1,
                             context + 1, PAGE)  # fmt: skip
    q = torch.randn(seqs, spec.num_heads, spec.head_dim, device="cuda", dtype=torch.bfloat16)
    return q, k_cache, v_cache, meta


def measure(seqs: int, context: int, spec: AttentionSpec, sinks: torch.Tensor) -> str:
    q, k_cache, v_cache, meta = decode_batch(seqs, context, spec)

    def run(splits: int | None) -> torch.Tensor:
        return triton_attention.paged_attention(q, k_cache, v_cache, meta, spec, sinks, 0.125, splits=splits)

    # what a decode graph takes: its metadata's longest sequence is the model's context length
    chosen = triton_attention.key_splits(1, seqs, spec.num_kv_heads, GRAPH_MAX_SEQ_LEN, 64)
    diff = (run(1).float() - run(chosen).float()).abs().max().item()
    one, split = time_us(lambda: run(1), graphs=True), time_us(lambda: run(chosen), graphs=True)
    return f"{seqs:>4} {context:>7} {one:>14.1f} {split:>9.1f} {chosen:>6} {diff:>9.1e}"


def main() -> None:
    spec = AttentionSpec(64, 8, 64, None, True)
    sinks = torch.randn(spec.num_heads, device="cuda")
    print(f"{'seqs':>4} {'context':>7} {'one program us':>14} {'split us':>9} {'splits':>6} {'max diff':>9}")
    for seqs in (1, 8):
        for context in (128, 1024, 8192, 32768):
            print(measure(seqs, context, spec, sinks), flush=True)


if __name__ == "__main__":
    main()
