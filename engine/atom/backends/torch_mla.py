"""Reference multi-head latent attention over the paged latent cache, in plain torch.

Absorbed form for every query (prefill and decode alike): scores = (q_nope W_UK) . latent +
q_rope . k_rope, out = (probs @ latent) W_UV^T. All sequences of a step in one batched computation
(queries padded per sequence, the context gathered through the block tables): no loop over sequences."""

from __future__ import annotations

import torch

from ..layers.context import AttentionMetadata
from .spec import Support
from .torch_attention import causal_mask, gather_context, pad_queries

SUPPORT = Support(devices=frozenset({"cpu", "cuda", "rocm"}))  # host-synced shapes: no CUDA graphs


def store_latent(
    latent: torch.Tensor, k_rope: torch.Tensor, cache: torch.Tensor, slots: torch.Tensor
) -> None:
    cache.view(-1, cache.shape[-1])[slots] = torch.cat((latent, k_rope), dim=-1).to(cache.dtype)


def absorbed_query(q_nope: torch.Tensor, q_rope: torch.Tensor, w_uk: torch.Tensor) -> torch.Tensor:
    """[T, H, kv_rank + rope]: each head's key up-projection folded into its query."""
    q_latent = torch.einsum("thn,hnr->thr", q_nope.float(), w_uk.float())
    return torch.cat((q_latent, q_rope.float()), dim=-1)


def forward(
    q_nope: torch.Tensor,  # [T, H, nope]
    q_rope: torch.Tensor,  # [T, H, rope], rotated
    latent: torch.Tensor,  # [T, kv_rank], normed
    k_rope: torch.Tensor,  # [T, rope], rotated
    cache: torch.Tensor,  # [blocks, block_size, kv_rank + rope]
    meta: AttentionMetadata,
    layer,  # the MLAttention: its up-projections and sizes
    scale: float,
) -> torch.Tensor:
    """-> [T, H, v_head_dim]"""
    rank = layer.kv_rank
    store_latent(latent, k_rope, cache, meta.slot_mapping)
    w_uk, w_uv = layer.up_projections()
    context = gather_context(cache, meta)  # [B, L, rank + rope]
    padded, offsets = pad_queries(absorbed_query(q_nope, q_rope, w_uk), meta)
    scores = torch.einsum("bqhd,bkd->bhqk", padded, context) * scale
    allowed = causal_mask(meta, context.shape[1])
    probs = scores.masked_fill(~allowed[:, None], float("-inf")).softmax(dim=-1)
    mixed = torch.einsum("bhqk,bkr->bqhr", probs, context[..., :rank])
    out = torch.einsum("bqhr,hvr->bqhv", mixed, w_uv.float())
    return out[meta.seq_idx, offsets].to(q_nope.dtype)
