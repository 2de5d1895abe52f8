"""Decode steps replayed from CUDA graphs, one per batch-size bucket (padded up), prefill stays eager.

A decode step is hundreds of small kernels; launching them from Python costs more than running them at small
batch. Each bucket's graph reads fixed input buffers; a step copies the batch into them and replays.
Padded rows are one-token sequences at position 0 whose K/V go to a scratch slot past the real cache, so
they never touch a live block; they attend to one key and their rows are never read. (Rows of no
sequence would leave the attention output unwritten there: a zero fill a layer inside the graph.)
"""

from __future__ import annotations

import numpy as np
import torch

from ..layers.context import AttentionMetadata, set_metadata
from .block_manager import cache_slots, padded_block_tables
from .step import StepInput, take_previous

BUCKETS = (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256)
# a decode step's per-row inputs: the rows of one matrix, so one transfer fills them all
VECTORS = ("input_ids", "positions", "slots", "query_lens", "seq_lens", "query_start_loc")


class DecodeGraphs:
    def __init__(self, model, max_num_seqs: int, max_blocks_per_seq: int, block_size: int, scratch_slot: int):
        self.model = model
        self.block_size = block_size
        self.scratch_slot = scratch_slot
        self.buckets = [b for b in BUCKETS if b < max_num_seqs] + [max_num_seqs]
        n, dev = self.buckets[-1], next(model.parameters()).device
        # A step's per-row inputs are the rows of one device matrix, filled from one pinned host copy in one
        # transfer (seven pageable copies cost more host time than a batch-1 step's kernels wait for).
        self.vectors = torch.zeros(len(VECTORS), n + 1, dtype=torch.long, device=dev)
        self.staged = torch.zeros(self.vectors.shape, dtype=torch.long, pin_memory=True)
        row = dict(zip(VECTORS, self.vectors))
        self.input_ids, self.positions, self.slots = (
            row["input_ids"][:n],
            row["positions"][:n],
            row["slots"][:n],
        )
        self.query_lens, self.seq_lens = row["query_lens"][:n], row["seq_lens"][:n]
        self.query_start_loc = row["query_start_loc"]  # n + 1 entries
        # every row a padding row until a step fills them (what capture runs on)
        self.slots.fill_(scratch_slot)
        self.query_lens.fill_(1)
        self.seq_lens.fill_(1)
        self.query_start_loc.copy_(torch.arange(n + 1))
        self.previous = torch.zeros(n, dtype=torch.long, device=dev)  # the last step's drawn tokens
        self.seq_idx = torch.zeros(n, dtype=torch.long, device=dev)
        self.block_tables = torch.zeros(n, max_blocks_per_seq, dtype=torch.long, device=dev)
        self.staged_tables = torch.zeros(self.block_tables.shape, dtype=torch.long, pin_memory=True)
        self.copied = torch.cuda.Event()  # the last step's transfer out of the staging buffers
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
            # rows whose token the previous step drew take it from the device (step.take_previous),
            # inside the graph: no launch of its own
            input_ids = take_previous(self.input_ids[:b], self.previous)
            return self.model.compute_logits(self.model(input_ids, self.positions[:b]))
        finally:
            set_metadata(None)

    @torch.inference_mode()
    def capture(self) -> None:
        """Largest bucket first so smaller graphs reuse its memory pool. Inputs are all padding rows here."""
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
    def run(self, step: StepInput, previous: torch.Tensor | None = None) -> torch.Tensor:
        n = len(step.query_lens)
        b = next(size for size in self.buckets if size >= n)
        # Only the columns this batch uses: the kernels read a row's blocks up to its length, so stale
        # entries past them are never read (a full-width copy is megabytes a step at large batches).
        tables = padded_block_tables(step.block_tables)
        width = tables.shape[1]
        self.copied.synchronize()  # the staging buffers are free again (long since, in practice)
        rows = {name: row[: b + 1] for name, row in zip(VECTORS, self.staged.numpy())}
        for row in rows.values():
            row[:] = 0
        rows["input_ids"][:n] = step.token_ids
        pos = rows["positions"]
        pos[:n] = step.starts
        rows["slots"][:] = self.scratch_slot
        rows["slots"][:n] = cache_slots(tables, np.arange(n), pos[:n], self.block_size)
        rows["query_lens"][:b] = 1
        rows["seq_lens"][:b] = pos[:b] + 1  # padding rows: 1 (position 0)
        rows["query_start_loc"][:] = np.arange(b + 1)
        self.staged_tables.numpy()[:n, :width] = tables
        self.vectors[:, : b + 1].copy_(self.staged[:, : b + 1], non_blocking=True)
        self.block_tables[:n, :width].copy_(self.staged_tables[:n, :width], non_blocking=True)
        self.copied.record()
        if previous is not None:
            self.previous[: len(previous)].copy_(previous)
        self.graphs[b].replay()
        return self.logits[b][:n]
