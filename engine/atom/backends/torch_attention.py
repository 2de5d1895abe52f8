"""Reference paged attention in plain torch: batched over sequences (padded), sinks and sliding window."""

from __future__ import annotations

import torch

from ..layers.context import AttentionMetadata
from .spec import AttentionSpec, Support

SUPPORT = Support(devices=frozenset({"cpu", "cuda", "rocm"}), head_dims=frozenset())


def store_kv(
    k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor
) -> None:
    k_cache.view(-1, *k_cache.shape[2:])[slot_mapping] = k
    v_cache.view(-1, *v_cache.shape[2:])[slot_mapping] = v


def gather_context(cache: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
    """Each sequence's cached tokens from its blocks, [B, L, ...] in fp32 (L = the longest context)."""
    blocks = meta.block_tables[:, : -(-meta.max_seq_len // meta.block_size)]
    return cache[blocks].flatten(1, 2)[:, : meta.max_seq_len].float()


def pad_queries(q: torch.Tensor, meta: AttentionMetadata) -> tuple[torch.Tensor, torch.Tensor]:
    """Queries [T, ...] -> padded per sequence [B, Qmax, ...] in fp32, and each token's offset in its
    sequence (out[meta.seq_idx, offsets] reads the rows back)."""
    offsets = torch.arange(q.shape[0], device=q.device) - meta.query_start_loc[meta.seq_idx]
    padded = q.new_zeros(meta.block_tables.shape[0], meta.max_query_len, *q.shape[1:], dtype=torch.float32)
    padded[meta.seq_idx, offsets] = q.float()
    return padded, offsets


def causal_mask(meta: AttentionMetadata, keys: int, window: int | None = None) -> torch.Tensor:
    """[B, Qmax, keys] bool: which context positions each padded query may attend to."""
    device = meta.seq_lens.device
    q_pos = (meta.seq_lens - meta.query_lens)[:, None] + torch.arange(meta.max_query_len, device=device)
    k_pos = torch.arange(keys, device=device)
    allowed = k_pos[None, None, :] <= q_pos[:, :, None]
    if window:
        allowed &= (q_pos[:, :, None] - k_pos[None, None, :]) < window
    return allowed


def forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    meta: AttentionMetadata,
    spec: AttentionSpec,
    sinks: torch.Tensor | None,
    scale: float,
    kv_stored: bool = False,
) -> torch.Tensor:
    """kv_stored: this step's keys and values are already in the cache (written by the rotary kernel)."""
    if not kv_stored:
        store_kv(k, v, k_cache, v_cache, meta.slot_mapping)
    num_seqs = meta.block_tables.shape[0]
    group = spec.num_heads // spec.num_kv_heads
    keys = gather_context(k_cache, meta).repeat_interleave(group, dim=2)  # [B, L, H, D]
    values = gather_context(v_cache, meta).repeat_interleave(group, dim=2)
    padded, offsets = pad_queries(q, meta)  # [B, Qmax, H, D]
    scores = torch.einsum("bqhd,bkhd->bhqk", padded, keys) * scale
    allowed = causal_mask(meta, keys.shape[1], spec.sliding_window)
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    if sinks is not None:
        sink = sinks.float()[None, :, None, None].expand(num_seqs, -1, meta.max_query_len, 1)
        probs = torch.cat((scores, sink), dim=-1).softmax(dim=-1)[..., :-1]
    else:
        probs = scores.softmax(dim=-1)
    out = torch.einsum("bhqk,bkhd->bqhd", probs, values)
    return out[meta.seq_idx, offsets].to(q.dtype)
