"""Decode steps replayed from CUDA graphs, one per batch-size bucket (padded up), prefill stays eager.

A decode step is hundreds of small kernels; launching them from Python costs more than running them at small
batch. Each bucket's graph reads fixed input buffers; a step copies the batch into them and replays.
Padded rows are sequences with no query tokens (the attention kernel skips them); their K/V go to a scratch
slot past the real cache, so they never touch a live block.
"""

from __future__ import annotations

import numpy as np
import torch

from ..layers.context import AttentionMetadata, set_metadata
from .block_manager import cache_slots, padded_block_tables
from .step import StepInput

BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)


class DecodeGraphs:
    def __init__(self, model, max_num_seqs: int, max_blocks_per_seq: int, block_size: int, scratch_slot: int):
        self.model = model
        self.block_size = block_size
        self.scratch_slot = scratch_slot
        self.buckets = [b for b in BUCKETS if b < max_num_seqs] + [max_num_seqs]
        n, dev = self.buckets[-1], next(model.parameters()).device
        self.input_ids = torch.zeros(n, dtype=torch.long, device=dev)
        self.positions = torch.zeros(n, dtype=torch.long, device=dev)
        self.slots = torch.full((n,), scratch_slot, dtype=torch.long, device=dev)
        self.seq_idx = torch.zeros(n, dtype=torch.long, device=dev)
        self.query_start_loc = torch.zeros(n + 1, dtype=torch.long, device=dev)
        self.query_lens = torch.zeros(n, dtype=torch.long, device=dev)
        self.seq_lens = torch.zeros(n, dtype=torch.long, device=dev)
        self.block_tables = torch.zeros(n, max_blocks_per_seq, dtype=torch.long, device=dev)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.logits: dict[int, torch.Tensor] = {}
        self.pool = None

    def metadata(self, b: int) -> AttentionMetadata:
        return AttentionMetadata(
            self.positions[:b],
            self.slots[:b],
            self.seq_idx[:b],
            self.query_start_loc[: b + 1],
            self.query_lens[:b],
            self.seq_lens[:b],
            self.block_tables[:b],
            1,
            self.block_tables.shape[1] * self.block_size,
            self.block_size,
        )

    def _forward(self, b: int) -> torch.Tensor:
        set_metadata(self.metadata(b))
        try:
            return self.model.compute_logits(self.model(self.input_ids[:b], self.positions[:b]))
        finally:
            set_metadata(None)

    @torch.inference_mode()
    def capture(self) -> None:
        """Largest bucket first so smaller graphs reuse its memory pool. Inputs are all-padding here."""
        for b in reversed(self.buckets):
            self._forward(b)  # compile kernels outside the capture
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                self.logits[b] = self._forward(b)
            self.pool = graph.pool()
            self.graphs[b] = graph

    def can_run(self, step: StepInput) -> bool:
        return len(step.query_lens) <= self.buckets[-1] and step.is_decode

    @torch.inference_mode()
    def run(self, step: StepInput) -> torch.Tensor:
        n = len(step.query_lens)
        b = next(size for size in self.buckets if size >= n)
        # Only the columns this batch uses: the kernels read a row's blocks up to its length, so stale
        # entries past them are never read (a full-width copy is megabytes a step at large batches).
        tables = padded_block_tables(step.block_tables)
        pos = np.array(step.starts + [0] * (b - n), dtype=np.int64)
        slots = np.full(b, self.scratch_slot, dtype=np.int64)
        slots[:n] = cache_slots(tables, np.arange(n), pos[:n], self.block_size)
        self.input_ids[:b].copy_(torch.tensor(step.token_ids + [0] * (b - n)))
        self.positions[:b].copy_(torch.from_numpy(pos))
        self.slots[:b].copy_(torch.from_numpy(slots))
        self.block_tables[:n, : tables.shape[1]].copy_(torch.from_numpy(tables))
        self.query_start_loc[: b + 1].copy_(torch.tensor(list(range(n + 1)) + [n] * (b - n)))
        self.query_lens[:b].copy_(torch.tensor([1] * n + [0] * (b - n)))
        self.seq_lens[:b].copy_(torch.from_numpy((pos + 1) * (np.arange(b) < n)))  # padding rows: 0
        self.graphs[b].replay()
        return self.logits[b][:n]
