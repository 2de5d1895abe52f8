"""Per-step attention metadata, set by the model runner and read by attention layers."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class AttentionMetadata:
    positions: torch.Tensor  # [T] position of each token in its sequence
    slot_mapping: torch.Tensor  # [T] KV-cache slot each token's K/V is written to
    seq_idx: torch.Tensor  # [T] row of block_tables each token belongs to
    query_start_loc: torch.Tensor  # [B+1] cumulative query lengths
    query_lens: torch.Tensor  # [B]
    seq_lens: torch.Tensor  # [B] context length after this step
    block_tables: torch.Tensor  # [B, max_blocks] padded with 0
    max_query_len: int
    max_seq_len: int
    block_size: int


_current: AttentionMetadata | None = None


def set_metadata(meta: AttentionMetadata | None) -> None:
    global _current
    _current = meta


def get_metadata() -> AttentionMetadata:
    assert _current is not None, "attention called outside a model-runner step"
    return _current
