"""Router semantics, named once and shared by every MoE backend (torch reference implementations)."""

from __future__ import annotations

import torch

SOFTMAX_TOPK = "softmax_topk"  # softmax over all experts, then top-k (no renormalisation)
SOFTMAX_TOPK_RENORM = "softmax_topk_renorm"  # ... then renormalise the k weights (Mixtral, Qwen3-MoE)
TOPK_SOFTMAX = "topk_softmax"  # top-k of the logits, softmax over those k (gpt-oss)
SIGMOID_GROUPED = "sigmoid_grouped_topk"  # DeepSeek-V3: sigmoid, bias correction, grouped top-k, scaling
ROUTINGS = (SOFTMAX_TOPK, SOFTMAX_TOPK_RENORM, TOPK_SOFTMAX, SIGMOID_GROUPED)


def route(logits: torch.Tensor, top_k: int, routing: str) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (weights float32 [T, k], expert ids int64 [T, k])."""
    logits = logits.float()
    if routing in (SOFTMAX_TOPK, SOFTMAX_TOPK_RENORM):
        weights, ids = logits.softmax(dim=-1).topk(top_k, dim=-1)
        if routing == SOFTMAX_TOPK_RENORM:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights, ids
    if routing == TOPK_SOFTMAX:
        values, ids = logits.topk(top_k, dim=-1)
        return values.softmax(dim=-1), ids
    raise NotImplementedError(f"routing {routing!r} has no reference implementation yet")
