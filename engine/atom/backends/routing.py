"""Router semantics, named once and shared by every MoE backend (torch reference implementations)."""

from __future__ import annotations

import torch

SOFTMAX_TOPK = "softmax_topk"  # softmax over all experts, then top-k (no renormalisation)
SOFTMAX_TOPK_RENORM = "softmax_topk_renorm"  # ... then renormalise the k weights (Mixtral, Qwen3-MoE)
TOPK_SOFTMAX = "topk_softmax"  # top-k of the logits, softmax over those k (gpt-oss)
SIGMOID_GROUPED = "sigmoid_grouped_topk"  # DeepSeek-V3: sigmoid, bias correction, grouped top-k, scaling
ROUTINGS = (SOFTMAX_TOPK, SOFTMAX_TOPK_RENORM, TOPK_SOFTMAX, SIGMOID_GROUPED)


def route(
    logits: torch.Tensor,
    top_k: int,
    routing: str,
    correction: torch.Tensor | None = None,
    groups: tuple[int, int] = (1, 1),
    scaling: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (weights float32 [T, k], expert ids int64 [T, k]). correction, groups, scaling: the
    sigmoid_grouped_topk routing's bias, (groups, groups kept) and factor."""
    logits = logits.float()
    if routing == SIGMOID_GROUPED:
        return _sigmoid_grouped(logits, top_k, correction, groups, scaling)
    if routing in (SOFTMAX_TOPK, SOFTMAX_TOPK_RENORM):
        weights, ids = logits.softmax(dim=-1).topk(top_k, dim=-1)
        if routing == SOFTMAX_TOPK_RENORM:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights, ids
    if routing == TOPK_SOFTMAX:
        values, ids = logits.topk(top_k, dim=-1)
        return values.softmax(dim=-1), ids
    raise NotImplementedError(f"routing {routing!r} has no reference implementation yet")


def _sigmoid_grouped(
    logits: torch.Tensor, top_k: int, correction: torch.Tensor | None, groups: tuple[int, int], scaling: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek-V3: sigmoid scores; the bias-corrected scores choose (only the groups whose two best
    corrected scores sum highest are open), the uncorrected ones weigh, renormalised, times scaling."""
    scores = logits.sigmoid()
    choice = scores if correction is None else scores + correction.float()
    num_groups, kept = groups
    t, e = choice.shape
    group_scores = choice.view(t, num_groups, e // num_groups).topk(2, dim=-1)[0].sum(dim=-1)
    open_groups = torch.zeros_like(group_scores, dtype=torch.bool)
    open_groups.scatter_(1, group_scores.topk(kept, dim=-1)[1], True)
    allowed = open_groups.repeat_interleave(e // num_groups, dim=1)
    ids = choice.masked_fill(~allowed, float("-inf")).topk(top_k, dim=-1)[1]
    weights = scores.gather(1, ids)
    return weights / (weights.sum(dim=-1, keepdim=True) + 1e-20) * scaling, ids
