"""Triton helpers shared by our kernels."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def dot(a, b, acc, IEEE: tl.constexpr):
    """acc + a @ b; IEEE keeps fp32 inputs exact (tensor cores would round them to tf32)."""
    if IEEE:
        return tl.dot(a, b, acc, input_precision="ieee")
    return tl.dot(a, b, acc)
