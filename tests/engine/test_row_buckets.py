"""Bounded token-count variants for eager steps, and the warm-up that reaches each of them."""

import torch

from atom.backends.row_buckets import PAD_ABOVE, PAD_STEP, padded_rows, warm_up_token_counts
from atom.backends.triton_kernels_moe import padding_logits


def variant(n: int) -> tuple:
    """What Triton compiles a routing kernel for, given n rows after padding: the rows rounded up
    to 32 (a constant) and the class of the count (1, divisible by 16, neither)."""
    m = padded_rows(n)
    return -(-m // 32), "one" if m == 1 else "x16" if m % 16 == 0 else "other"


def test_padding_bounds_the_rows_and_never_touches_decode_batches():
    for n in range(1, 9000):
        m = padded_rows(n)
        assert m >= n
        if n <= PAD_ABOVE:
            assert m == n
        else:
            assert m % PAD_STEP == 0 and m - n < PAD_STEP


def test_the_warm_up_reaches_every_variant_a_step_can_bring():
    for limit in (512, 2048, 8192):
        # the warm-up runs these and a full chunk of `limit` tokens
        warmed = {variant(n) for n in [*warm_up_token_counts(limit), limit]}
        assert {variant(n) for n in range(1, limit + 1)} <= warmed
        assert all(n < limit for n in warm_up_token_counts(limit))
        # a handful of prefills, not one per count
        assert len(warm_up_token_counts(limit)) <= 18 + limit // PAD_STEP


def test_padding_rows_spread_over_the_experts():
    for experts, k in ((32, 4), (128, 4), (8, 2)):
        logits = padding_logits(experts, k, torch.float32, torch.device("cpu"))
        assert logits.shape == (PAD_STEP - 1, experts)
        picked = logits.topk(k, dim=1).indices
        assert all(len(set(row.tolist())) == k for row in picked)  # k distinct experts a row
        load = torch.bincount(picked.flatten(), minlength=experts)
        assert load.max() - load.min() <= k  # even, up to one row's worth
