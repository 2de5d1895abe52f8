"""Token counts an eager step's kernels see, bucketed so that Triton compiles a bounded set of them.

Triton compiles a kernel again for each new value of a compile-time constant, and for an integer
argument equal to 1 or divisible by 16 (its specializations). triton_kernels' routing kernels take the
token count rounded up to 32 as a constant (a bitmatrix stride), so a server's mixed steps, whose counts
vary freely, compiled kernels mid-traffic (a second each, the whole step waiting). Past PAD_ABOVE rows
the MoE input is padded to a multiple of PAD_STEP; at or below it every count's class is few enough for
the warm-up to run each once (`warm_up_token_counts`).
"""

from __future__ import annotations

PAD_ABOVE = 256  # decode batches (CUDA-graph sizes up to 256) are never padded
PAD_STEP = 256


def padded_rows(n: int) -> int:
    return n if n <= PAD_ABOVE else -(-n // PAD_STEP) * PAD_STEP


def warm_up_token_counts(limit: int) -> list[int]:
    """Prefill sizes, below `limit`, that reach every compiled variant a step of up to `limit` tokens
    can: at or below PAD_ABOVE, one count per 32-row bucket and specialization class (1, divisible by
    16, neither); above it, one count per padded bucket."""
    small = {1, 3} | {c for b in range(1, PAD_ABOVE // 32 + 1) for c in (32 * b - 16, 32 * b - 15)}
    large = range(PAD_ABOVE + 1, limit, PAD_STEP)
    return [n for n in sorted(small) if n < limit] + list(large)
