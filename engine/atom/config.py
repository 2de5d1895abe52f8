"""Engine configuration (plain data classes)."""

from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ParallelConfig:
    """Tensor parallelism: tp_size ranks, one process (and one GPU) each, spread over nnodes machines
    with tp_size // nnodes ranks on each. Layers shard their weights by (tp_size, rank); tp_size 1 is a
    no-op. Rank 0 lives with the engine core; the other ranks are workers that run what it schedules.

    master_addr/master_port: where rank 0 listens (torch.distributed's rendezvous on the port, the step
    channel on the port after it). One node: a free port is picked when none is given."""

    tp_size: int = 1
    rank: int = 0
    nnodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int | None = None
    timeout_s: float = 300.0  # a collective (or a step's inputs) longer than this ends the engine

    def __post_init__(self) -> None:
        if self.tp_size < 1:
            raise ValueError(f"tensor_parallel_size must be at least 1, got {self.tp_size}")
        if self.nnodes < 1 or self.tp_size % self.nnodes:
            raise ValueError(
                f"tensor_parallel_size {self.tp_size} must be a multiple of nnodes {self.nnodes} "
                "(every node runs the same number of ranks)"
            )
        if not 0 <= self.node_rank < self.nnodes:
            raise ValueError(f"node_rank must be in [0, {self.nnodes}), got {self.node_rank}")
        if self.nnodes > 1 and self.master_port is None:
            raise ValueError("several nodes need --master-addr and --master-port (rank 0's host and port)")

    @property
    def ranks_per_node(self) -> int:
        return self.tp_size // self.nnodes

    @property
    def local_rank(self) -> int:
        return self.rank % self.ranks_per_node

    @property
    def node_ranks(self) -> range:
        """The global ranks this node runs."""
        first = self.node_rank * self.ranks_per_node
        return range(first, first + self.ranks_per_node)

    def for_rank(self, rank: int) -> ParallelConfig:
        return replace(self, rank=rank)


@dataclass
class EngineConfig:
    model: str
    max_model_len: int | None = None  # default: the model's context length
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 2048
    block_size: int = 16
    num_kv_blocks: int | None = None  # default: from kv_cache_memory_gb, else gpu_memory_utilization
    kv_cache_memory_gb: float | None = None  # a fixed KV cache size; default: 2 GB on the CPU
    gpu_memory_utilization: float = 0.9  # on a GPU: the share of its memory this engine may hold
    enable_prefix_caching: bool = True
    dtype: str = "auto"  # auto: bf16 on GPU, fp32 on CPU
    device: str = "auto"
    load_format: str = "auto"  # auto | dummy
    moe_backend: str | None = None  # force one; None = best exact match
    attention_backend: str | None = None
    linear_backend: str | None = None  # an FP8 checkpoint's dense projections: triton (FP8 kept) | torch
    seed: int = 0
    enforce_eager: bool = False  # no CUDA graphs for decode
    async_scheduling: bool = True  # launch each step before reading the last one's tokens (core.py)
    tensor_parallel_size: int = 1
    parallel: ParallelConfig | None = None  # the full set (nodes, rendezvous); overrides the size above

    def __post_init__(self) -> None:
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError(f"gpu_memory_utilization must be in (0, 1], got {self.gpu_memory_utilization}")
        if self.block_size < 1 or self.block_size & (self.block_size - 1):
            raise ValueError(f"block_size must be a power of two, got {self.block_size}")
        if self.max_num_seqs < 1 or self.max_num_batched_tokens < 1:
            raise ValueError("max_num_seqs and max_num_batched_tokens must be positive")
        if self.load_format not in ("auto", "dummy"):
            raise ValueError(f"load_format must be 'auto' or 'dummy', got {self.load_format!r}")
        self.parallel = self.parallel or ParallelConfig(tp_size=self.tensor_parallel_size)
        self.tensor_parallel_size = self.parallel.tp_size
