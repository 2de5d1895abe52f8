"""Engine configuration (one plain data class)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ParallelConfig:
    """Tensor parallelism: layers shard their weights by (tp_size, rank); tp_size 1 is a no-op."""

    tp_size: int = 1
    rank: int = 0


@dataclass
class EngineConfig:
    model: str
    max_model_len: int | None = None  # default: the model's context length
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 2048
    block_size: int = 16
    num_kv_blocks: int | None = None  # default: from kv_cache_memory_gb
    kv_cache_memory_gb: float = 2.0
    enable_prefix_caching: bool = True
    dtype: str = "auto"  # auto: bf16 on GPU, fp32 on CPU
    device: str = "auto"
    load_format: str = "auto"  # auto | dummy
    moe_backend: str | None = None  # force one; None = best exact match
    attention_backend: str | None = None
    seed: int = 0
    enforce_eager: bool = False  # no CUDA graphs for decode
    parallel: ParallelConfig | None = None

    def __post_init__(self) -> None:
        if self.block_size < 1 or self.block_size & (self.block_size - 1):
            raise ValueError(f"block_size must be a power of two, got {self.block_size}")
        if self.max_num_seqs < 1 or self.max_num_batched_tokens < 1:
            raise ValueError("max_num_seqs and max_num_batched_tokens must be positive")
        if self.load_format not in ("auto", "dummy"):
            raise ValueError(f"load_format must be 'auto' or 'dummy', got {self.load_format!r}")
        self.parallel = self.parallel or ParallelConfig()
