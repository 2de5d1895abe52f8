"""Owns the model, its KV cache and the chosen backends; turns a scheduled batch into logits."""

from __future__ import annotations

from pathlib import Path

import torch

from ..backends import registry
from ..config import EngineConfig
from ..layers.context import AttentionMetadata, set_metadata
from ..models.loader import load_model
from ..platform import Platform
from .block_manager import cache_slots, padded_block_tables
from .cuda_graphs import DecodeGraphs
from .scheduler import ScheduledBatch

DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
}


def resolve_device(config: EngineConfig, platform: Platform) -> tuple[torch.device, torch.dtype]:
    device = torch.device(platform.device if config.device == "auto" else config.device)
    if config.dtype == "auto":
        dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    else:
        dtype = DTYPES[config.dtype]
    return device, dtype


class ModelRunner:
    def __init__(self, config: EngineConfig, platform: Platform, max_model_len: int) -> None:
        self.config = config
        self.device, self.dtype = resolve_device(config, platform)
        self.model = load_model(
            Path(config.model), self.dtype, self.device, config.parallel, config.load_format, config.seed
        )
        self.selections = self._select_backends(platform)
        self.block_size = config.block_size
        self.num_blocks = config.num_kv_blocks or self._blocks_for_memory(config.kv_cache_memory_gb)
        self._allocate_kv_cache()
        self.graphs = self._capture_graphs(max_model_len) if self._graphs_usable() else None

    def _select_backends(self, platform: Platform) -> dict[str, registry.Selection]:
        chosen: dict[str, registry.Selection] = {}
        for layer in self.model.attention_layers():
            sel = registry.select("attention", layer.spec, platform, self.config.attention_backend)
            layer.backend = sel.module
            chosen.setdefault(f"attention {layer.spec}", sel)
        for layer in self.model.moe_layers():
            sel = registry.select("moe", layer.spec, platform, self.config.moe_backend)
            layer.backend = sel.module
            if hasattr(sel.module, "prepare"):
                sel.module.prepare(layer)
            chosen.setdefault(f"moe {layer.spec}", sel)
        return chosen

    def _blocks_for_memory(self, gb: float) -> int:
        layers = self.model.attention_layers()
        per_block = (
            sum(2 * self.block_size * a.num_kv_heads * a.head_dim for a in layers) * self.dtype.itemsize
        )
        return max(16, int(gb * 2**30 // per_block))

    def _graphs_usable(self) -> bool:
        """Only when every chosen backend declares itself free of host syncs (the torch references are not)."""
        if self.config.enforce_eager or self.device.type != "cuda":
            return False
        return all(sel.support.cuda_graphs for sel in self.selections.values())

    def _capture_graphs(self, max_model_len: int) -> DecodeGraphs:
        graphs = DecodeGraphs(
            self.model,
            self.config.max_num_seqs,
            -(-max_model_len // self.block_size),
            self.block_size,
            scratch_slot=self.num_blocks * self.block_size,
        )
        graphs.capture()
        return graphs

    def _allocate_kv_cache(self) -> None:
        for layer in self.model.attention_layers():
            # one block past the end: a scratch slot for the padded rows of CUDA-graph decode steps
            shape = (self.num_blocks + 1, self.block_size, layer.num_kv_heads, layer.head_dim)
            layer.k_cache = torch.zeros(shape, dtype=self.dtype, device=self.device)
            layer.v_cache = torch.zeros(shape, dtype=self.dtype, device=self.device)

    def prepare(self, batch: ScheduledBatch) -> tuple[torch.Tensor, AttentionMetadata, torch.Tensor]:
        """Flatten the batch. Returns input ids, attention metadata, and the rows to take logits from."""
        ids, starts, query_lens, seq_lens, last_rows = [], [], [], [], []
        row = 0
        for seq, n in zip(batch.seqs, batch.num_tokens, strict=True):
            start = seq.num_computed_tokens
            ids.extend(seq.token_ids[start : start + n])
            starts.append(start)
            query_lens.append(n)
            seq_lens.append(start + n)
            row += n
            if start + n == seq.num_tokens:
                last_rows.append(row - 1)
        dev = self.device
        query_lens_t = torch.tensor(query_lens, device=dev)
        seq_lens_t = torch.tensor(seq_lens, device=dev)
        qsl = torch.zeros(len(query_lens) + 1, dtype=torch.long, device=dev)
        qsl[1:] = query_lens_t.cumsum(0)
        seq_idx = torch.repeat_interleave(torch.arange(len(query_lens), device=dev), query_lens_t)
        positions = torch.arange(row, device=dev) - qsl[seq_idx] + torch.tensor(starts, device=dev)[seq_idx]
        tables = torch.from_numpy(padded_block_tables(batch.seqs)).to(dev)
        slots = cache_slots(tables, seq_idx, positions, self.block_size)
        meta = AttentionMetadata(
            positions,
            slots,
            seq_idx,
            qsl,
            query_lens_t,
            seq_lens_t,
            tables,
            max(query_lens),
            max(seq_lens),
            self.block_size,
        )
        return torch.tensor(ids, device=dev), meta, torch.tensor(last_rows, dtype=torch.long, device=dev)

    @torch.inference_mode()
    def run(self, batch: ScheduledBatch) -> torch.Tensor:
        """Logits [num sequences that finished their tokens this step, vocab] in float32."""
        if self.graphs is not None and self.graphs.can_run(batch):
            return self.graphs.run(batch)
        input_ids, meta, last_rows = self.prepare(batch)
        set_metadata(meta)
        try:
            hidden = self.model(input_ids, meta.positions)
        finally:
            set_metadata(None)
        return self.model.compute_logits(hidden[last_rows])
