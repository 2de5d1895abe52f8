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
) -> torch.Tensor:
    store_kv(k, v, k_cache, v_cache, meta.slot_mapping)
    num_seqs = meta.block_tables.shape[0]
    group = spec.num_heads // spec.num_kv_heads
    # Gather each sequence's context from its blocks: [B, L, Hkv, D] (L = blocks * block_size).
    blocks = meta.block_tables[:, : -(-meta.max_seq_len // meta.block_size)]
    keys = k_cache[blocks].flatten(1, 2)[:, : meta.max_seq_len].float()
    values = v_cache[blocks].flatten(1, 2)[:, : meta.max_seq_len].float()
    # Queries padded per sequence: [B, Qmax, H, D].
    offsets = torch.arange(q.shape[0], device=q.device) - meta.query_start_loc[meta.seq_idx]
    padded = q.new_zeros(num_seqs, meta.max_query_len, *q.shape[1:], dtype=torch.float32)
    padded[meta.seq_idx, offsets] = q.float()
    keys = keys.repeat_interleave(group, dim=2)
    values = values.repeat_interleave(group, dim=2)
    scores = torch.einsum("bqhd,bkhd->bhqk", padded, keys) * scale
    q_pos = (meta.seq_lens - meta.query_lens)[:, None] + torch.arange(meta.max_query_len, device=q.device)[
        None
    ]
    k_pos = torch.arange(keys.shape[1], device=q.device)
    allowed = k_pos[None, None, :] <= q_pos[:, :, None]
    if spec.sliding_window:
        allowed &= (q_pos[:, :, None] - k_pos[None, None, :]) < spec.sliding_window
    scores = scores.masked_fill(~allowed[:, None], float("-inf"))
    if sinks is not None:
        sink = sinks.float()[None, :, None, None].expand(num_seqs, -1, meta.max_query_len, 1)
        probs = torch.cat((scores, sink), dim=-1).softmax(dim=-1)[..., :-1]
    else:
        probs = scores.softmax(dim=-1)
    out = torch.einsum("bhqk,bkhd->bqhd", probs, values)
    return out[meta.seq_idx, offsets].to(q.dtype)
