"""Which slice of a checkpoint tensor a rank holds. Written once; the layers ask, the loader copies."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..config import ParallelConfig
from ..errors import ModelLoadError


@dataclass(frozen=True)
class Shard:
    """This rank's slice of a full tensor: `size` entries from `start` along `dim`."""

    dim: int
    start: int
    size: int

    def take(self, full: torch.Tensor) -> torch.Tensor:
        return full.narrow(self.dim, self.start, self.size)


def split(total: int, parts: int, index: int, unit: int = 1, what: str = "dimension") -> tuple[int, int]:
    """(start, size) of part `index` of `total` values cut into `parts` on multiples of `unit`, as evenly
    as the units allow (the first parts take one unit more when they do not divide)."""
    if total % unit:
        raise ModelLoadError(f"the {what} ({total}) is not a multiple of {unit}")
    units = total // unit
    if units < parts:
        raise ModelLoadError(
            f"tensor parallelism {parts} cannot split the {what} ({total}"
            + (f" = {units} blocks of {unit}" if unit > 1 else "")
            + f"): every rank needs at least {unit}; use at most {units} ranks"
        )
    base, extra = divmod(units, parts)
    start = index * base + min(index, extra)
    return start * unit, (base + (index < extra)) * unit


def attention_heads(
    num_heads: int, num_kv_heads: int, parallel: ParallelConfig
) -> tuple[tuple[int, int], tuple[int, int]]:
    """((first q head, count), (first kv head, count)) for this rank. Query heads split evenly; K/V
    heads split too, or, with more ranks than K/V heads, each rank keeps the one its query heads read
    (replicated over tp_size // num_kv_heads ranks)."""
    tp, rank = parallel.tp_size, parallel.rank
    if num_heads % tp:
        raise ModelLoadError(
            f"tensor parallelism {tp} does not divide the model's {num_heads} attention heads; "
            f"use a divisor of {num_heads}"
        )
    if num_kv_heads % tp and tp % num_kv_heads:
        raise ModelLoadError(
            f"tensor parallelism {tp} and the model's {num_kv_heads} key/value heads: one must divide "
            "the other (K/V heads are split, or replicated when there are fewer than ranks)"
        )
    q = (rank * num_heads // tp, num_heads // tp)
    kv = (
        (rank * num_kv_heads // tp, num_kv_heads // tp)
        if num_kv_heads >= tp
        else (rank * num_kv_heads // tp, 1)
    )
    return q, kv


def vocab_rows(vocab: int, parallel: ParallelConfig) -> tuple[int, int]:
    """(first row, rows) of the embedding / LM head on this rank: the vocabulary padded up to a multiple
    of tp_size, so every rank holds the same number of rows (the padding rows are zeros, their logits
    cut off after the gather)."""
    per_rank = -(-vocab // parallel.tp_size)
    return parallel.rank * per_rank, per_rank
