"""Pieces both Triton MoE paths (grouped GEMM and per-pair GEMV) share: E2M1 decoding and the activation."""

from __future__ import annotations

import triton
import triton.language as tl

ACTIVATIONS = {"silu": 0, "swiglu_oai": 1}


@triton.jit
def e2m1_as_half(code):
    """4-bit E2M1 codes as fp16 values 2^-14 times too small, by bit placement rather than arithmetic.

    Sign and the 3 magnitude bits dropped into an fp16 (sign | exponent low bits | mantissa top bit) give
    the E2M1 value times 2^-14, subnormal 0.5 included; the caller folds the 2^14 into the block scale.
    """
    code = code.to(tl.uint16)
    return (((code & 8) << 12) | ((code & 7) << 9)).to(tl.float16, bitcast=True)


@triton.jit
def activate(gate, up, alpha, limit, ACTIVATION: tl.constexpr):
    """0: SiLU(gate) * up; 1: gpt-oss's clamped SwiGLU, (up + 1) * gate * sigmoid(alpha * gate)."""
    if ACTIVATION == 1:
        gate = tl.minimum(gate, limit)
        up = tl.minimum(tl.maximum(up, -limit), limit)
        return (up + 1.0) * gate * tl.sigmoid(alpha * gate)
    return gate * tl.sigmoid(gate) * up
