"""Owns the model, its KV cache and the chosen backends; turns a scheduled batch into logits."""

from __future__ import annotations

import os
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import torch

from ..backends import registry
from ..backends.spec import LinearSpec, MoESpec
from ..config import EngineConfig
from ..errors import BackendError, EngineDeadError
from ..layers.context import AttentionMetadata, set_metadata
from ..models import checkpoint
from ..models.loader import check_shards, load_model, read_config
from ..parallel import comm
from ..parallel.workers import WorkerPool, pick_port
from ..platform import Platform
from .block_manager import cache_slots, padded_block_tables
from .cuda_graphs import DecodeGraphs
from .scheduler import ScheduledBatch
from .step import StepInput, take_previous

DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
}


def resolve_device(config: EngineConfig, platform: Platform) -> tuple[torch.device, torch.dtype]:
    """This rank's device (GPU i for local rank i) and the compute dtype."""
    device = torch.device(platform.device if config.device == "auto" else config.device)
    parallel = config.parallel
    if device.type == "cuda" and parallel.tp_size > 1:
        found = torch.cuda.device_count()
        if found < parallel.ranks_per_node:
            raise EngineDeadError(
                f"tensor parallelism {parallel.tp_size} over {parallel.nnodes} node(s) needs "
                f"{parallel.ranks_per_node} GPUs on each; this node has {found}"
            )
        device = torch.device("cuda", parallel.local_rank)
        torch.cuda.set_device(device)
    elif device.type == "cpu" and parallel.tp_size > 1:  # the ranks share the cores
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // parallel.ranks_per_node))
    if config.dtype == "auto":
        dtype = torch.float32 if device.type == "cpu" else torch.bfloat16
    else:
        dtype = DTYPES[config.dtype]
    return device, dtype


CPU_KV_CACHE_GB = 2.0
SAMPLER_COPIES = 4  # fp32 [rows, vocab] tensors the sampler may hold at once (logits, probabilities, ...)
GRAPH_RESERVE_BYTES = 1 << 30  # CUDA graphs' pools and the allocator's slack


def kv_blocks_for(total: int, free: int, peak: int, utilization: float, bytes_per_block: int) -> int:
    """The KV blocks that fit in `utilization` of a GPU's `total` bytes once everything in use now
    (total - free: weights, the CUDA context, other processes), the activations' `peak` and a reserve
    for CUDA graphs are counted. Raises when nothing is left, saying what to change."""
    budget = utilization * total - (total - free) - peak - GRAPH_RESERVE_BYTES
    blocks = int(budget // bytes_per_block)
    if blocks < 16:
        gib = 2**30
        raise EngineDeadError(
            f"no room for a KV cache: {utilization:.0%} of the GPU's {total / gib:.1f} GiB, less "
            f"{(total - free) / gib:.1f} GiB in use and {peak / gib:.1f} GiB of activations, leaves "
            f"{max(budget, 0) / gib:.2f} GiB; raise --gpu-memory-utilization, lower --max-num-batched-tokens "
            "or --max-num-seqs, or set --kv-cache-memory-gb"
        )
    return blocks


class ModelRunner:
    """One per rank. Rank 0's also starts the other ranks (tensor parallelism) and sends them each step."""

    def __init__(self, config: EngineConfig, platform: Platform, max_model_len: int) -> None:
        self.config = config
        self.workers: WorkerPool | None = None
        parallel = config.parallel
        self.device, self.dtype = resolve_device(config, platform)
        if parallel.tp_size > 1:
            if parallel.rank == 0:
                check_shards(Path(config.model), parallel)
                self.config = config = replace(config, parallel=pick_port(parallel))
                self.workers = WorkerPool(config, max_model_len)
            comm.init(config.parallel, self.device)
        linear = self._select_linear(platform)  # {"linear <spec>": selection}, for an FP8 checkpoint
        self.model = load_model(
            Path(config.model), self.dtype, self.device, config.parallel, config.load_format, config.seed,
            fp8_linear=next(iter(linear.values())).module if linear else None, fnuz=platform.arch == "gfx942",
            experts_fp8=partial(self._moe_takes_fp8, platform),
        )  # fmt: skip
        self.selections = {**linear, **self._select_backends(platform)}
        self.block_size = config.block_size
        self.graphs: DecodeGraphs | None = None  # captured once the cache exists
        self.last_step_graphed = False  # whether the last step replayed a CUDA graph (for the stats)
        self.num_blocks = self._kv_blocks(config, max_model_len)
        if parallel.tp_size > 1:  # every rank holds the same blocks (free memory may differ)
            self.num_blocks = comm.min_over_ranks(self.num_blocks, self.device)
        self._allocate_kv_cache()
        self.graphs = self._capture_graphs(max_model_len) if self._graphs_usable() else None

    def close(self) -> None:
        self.graphs = None  # the captured collectives go before the group does
        if self.workers is not None:
            self.workers.close()
        comm.close()

    def _select_linear(self, platform: Platform) -> dict[str, registry.Selection]:
        """An FP8 checkpoint's dense projections: chosen before loading, which it decides (FP8 kept or
        dequantized as it is read)."""
        if not checkpoint.is_fp8(read_config(Path(self.config.model))):
            return {}
        spec = LinearSpec("fp8_block", str(self.dtype).removeprefix("torch."))
        return {f"linear {spec}": registry.select("linear", spec, platform, self.config.linear_backend)}

    def _moe_takes_fp8(self, platform: Platform, spec: MoESpec) -> bool:
        """Whether a MoE backend (the forced one, if any) multiplies this layer's experts kept in FP8."""
        try:
            registry.select("moe", replace(spec, quant="fp8_block"), platform, self.config.moe_backend)
        except BackendError:
            return False
        return True

    def _select_backends(self, platform: Platform) -> dict[str, registry.Selection]:
        chosen: dict[str, registry.Selection] = {}
        for layer in self.model.attention_layers():
            kind = layer.backend_kind  # attention | mla (--attention-backend names either)
            sel = registry.select(kind, layer.spec, platform, self.config.attention_backend)
            layer.backend = sel.module
            chosen.setdefault(f"{kind} {layer.spec}", sel)
        for layer in self.model.moe_layers():
            sel = registry.select("moe", layer.spec, platform, self.config.moe_backend)
            layer.backend = sel.module
            if hasattr(sel.module, "prepare"):
                sel.module.prepare(layer)
            chosen.setdefault(f"moe {layer.spec}", sel)
        return chosen

    def _kv_blocks(self, config: EngineConfig, max_model_len: int) -> int:
        """Given, or from a fixed size, or (on a GPU, by default) from what the GPU has left."""
        if config.num_kv_blocks:
            return config.num_kv_blocks
        if config.kv_cache_memory_gb is not None or self.device.type != "cuda":
            return max(
                16, int((config.kv_cache_memory_gb or CPU_KV_CACHE_GB) * 2**30 // self._bytes_per_block())
            )
        peak = self._profile_prefill(min(config.max_num_batched_tokens, max_model_len))
        peak += config.max_num_seqs * self.model.args.vocab_size * 4 * SAMPLER_COPIES  # a full decode batch
        torch.cuda.empty_cache()
        free, total = torch.cuda.mem_get_info(self.device)
        return kv_blocks_for(total, free, peak, config.gpu_memory_utilization, self._bytes_per_block())

    def _bytes_per_block(self) -> int:
        layers = self.model.attention_layers()
        return sum(a.cache_values_per_token() for a in layers) * self.block_size * self.dtype.itemsize

    def _profile_prefill(self, tokens: int) -> int:
        """Peak activation bytes of the largest prefill step (one sequence of `tokens`), run on a cache just
        large enough for it, which is freed after."""
        blocks = -(-tokens // self.block_size)
        for layer in self.model.attention_layers():
            layer.allocate_cache(blocks + 1, self.block_size, self.dtype, self.device)
        vocab = self.model.args.vocab_size
        step = StepInput([i % vocab for i in range(tokens)], [0], [tokens], [True], [list(range(blocks))])
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        self.execute(step)
        torch.cuda.synchronize(self.device)
        peak = torch.cuda.max_memory_allocated(self.device) - before
        for layer in self.model.attention_layers():
            layer.allocate_cache(0, self.block_size, self.dtype, self.device)
        return peak

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
            layer.allocate_cache(self.num_blocks + 1, self.block_size, self.dtype, self.device)

    def prepare(self, step: StepInput) -> tuple[torch.Tensor, AttentionMetadata, torch.Tensor]:
        """Flatten the step. Returns input ids, attention metadata, and the rows to take logits from."""
        dev = self.device
        query_lens = torch.tensor(step.query_lens, device=dev)
        qsl = torch.zeros(len(step.query_lens) + 1, dtype=torch.long, device=dev)
        qsl[1:] = query_lens.cumsum(0)
        seq_idx = torch.repeat_interleave(torch.arange(len(step.query_lens), device=dev), query_lens)
        rows = len(step.token_ids)
        positions = (
            torch.arange(rows, device=dev) - qsl[seq_idx] + torch.tensor(step.starts, device=dev)[seq_idx]
        )
        tables = torch.from_numpy(padded_block_tables(step.block_tables)).to(dev)
        slots = cache_slots(tables, seq_idx, positions, self.block_size)
        seq_lens = [s + n for s, n in zip(step.starts, step.query_lens, strict=True)]
        meta = AttentionMetadata(
            positions,
            slots,
            seq_idx,
            qsl,
            query_lens,
            torch.tensor(seq_lens, device=dev),
            tables,
            max(step.query_lens),
            max(seq_lens),
            self.block_size,
        )
        ends = np.cumsum(step.query_lens) - 1
        last_rows = torch.tensor(ends[np.array(step.wants_logits)], dtype=torch.long, device=dev)
        return torch.tensor(step.token_ids, device=dev), meta, last_rows

    def run(self, batch: ScheduledBatch, previous: torch.Tensor | None = None) -> torch.Tensor:
        """Logits [num sequences that finished their tokens this step, vocab] in float32 (rank 0).
        previous: the tokens the last step drew, on the device, where this batch's token ids hold markers
        for them (StepInput)."""
        step = StepInput.from_batch(batch, 0 if previous is None else len(previous))
        if self.workers is None:
            return self.execute(step, previous)
        self.workers.send(step)
        try:
            logits = self.execute(step, previous)
            if logits.is_cuda:  # the liveness check: this step's kernels must finish within the timeout
                done = torch.cuda.Event()
                done.record()
                self.workers.watch.began(done.query)
            return logits
        except Exception as e:  # the ranks may now disagree on where they are: nothing can be retried
            raise EngineDeadError(f"a tensor-parallel step failed: {e.__class__.__name__}: {e}") from e

    @torch.inference_mode()
    def execute(self, step: StepInput, previous: torch.Tensor | None = None) -> torch.Tensor:
        """One forward pass; every rank runs it with the same step (the collectives pair up inside)."""
        if step.previous_rows and self.config.parallel.tp_size > 1:  # the workers' copy of the tokens
            if previous is None:
                previous = torch.empty(step.previous_rows, dtype=torch.long, device=self.device)
            comm.broadcast_from_rank_0(previous)
        self.last_step_graphed = self.graphs is not None and self.graphs.can_run(step)
        if self.last_step_graphed:
            return self.graphs.run(step, previous)
        input_ids, meta, last_rows = self.prepare(step)
        if previous is not None:
            input_ids = take_previous(input_ids, previous)
        set_metadata(meta)
        try:
            hidden = self.model(input_ids, meta.positions)
        finally:
            set_metadata(None)
        return self.model.compute_logits(hidden[last_rows])
