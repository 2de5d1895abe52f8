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
def gate_up_rows(cols, inter, ACTIVATION: tl.constexpr):
    """Rows of w13 holding output column `cols` of the gate and of the up projection: gpt-oss interleaves
    them (swiglu_oai: gate 2c, up 2c + 1), the others stack [gate | up]."""
    if ACTIVATION == 1:
        gate_rows, up_rows = 2 * cols, 2 * cols + 1
    else:
        gate_rows, up_rows = cols, inter + cols
    return gate_rows, up_rows


@triton.jit
def load_dense(w_base, rows, row_ok, k0, K, stride_row, BLOCK_K: tl.constexpr):
    """Rows of a dense (bf16/fp16/fp32) matrix at k0..k0+BLOCK_K: [rows, BLOCK_K], zeros past the edges."""
    k = k0 + tl.arange(0, BLOCK_K)
    return tl.load(
        w_base + rows[:, None] * stride_row + k[None, :], mask=row_ok[:, None] & (k < K)[None, :], other=0.0
    )


@triton.jit
def load_mxfp4(w_base, s_base, rows, row_ok, k0, K, stride_row, stride_scale_row, BLOCK_K: tl.constexpr):
    """Rows of an MXFP4 matrix at k0..k0+BLOCK_K: packed nibbles [rows, BLOCK_K/2] (byte j holds k = 2j in
    its low nibble, 2j + 1 in its high one) and E8M0 exponents [rows, BLOCK_K/32] (one per 32 values)."""
    j = tl.arange(0, BLOCK_K // 2)
    packed = tl.load(
        w_base + rows[:, None] * stride_row + (k0 // 2 + j)[None, :],
        mask=row_ok[:, None] & (k0 + 2 * j < K)[None, :],
        other=0,
    )
    return packed, load_mx_scales(s_base, rows, row_ok, k0, K, stride_scale_row, BLOCK_K)


@triton.jit
def load_mx_scales(s_base, rows, row_ok, k0, K, stride_scale_row, BLOCK_K: tl.constexpr):
    """E8M0 exponents [rows, BLOCK_K/32] of the values k0..k0+BLOCK_K (one per 32); 127 (x1) past the edges."""
    g = tl.arange(0, BLOCK_K // 32)
    return tl.load(
        s_base + rows[:, None] * stride_scale_row + (k0 // 32 + g)[None, :],
        mask=row_ok[:, None] & (k0 + 32 * g < K)[None, :],
        other=127,
    )


@triton.jit
def byte_scales(exponent, BLOCK_K: tl.constexpr):
    """[rows, BLOCK_K/32] exponents -> [rows, BLOCK_K/2] fp32 factors, one per packed byte: one exp2 per
    32 values, 2^(e - 127) times the 2^14 that e2m1_as_half leaves out."""
    factor = tl.exp2(exponent.to(tl.float32) - 113.0)
    rows_n: tl.constexpr = factor.shape[0]
    return tl.reshape(
        tl.broadcast_to(factor[:, :, None], [rows_n, BLOCK_K // 32, 16]), [rows_n, BLOCK_K // 2]
    )


@triton.jit
def activate(gate, up, alpha, limit, ACTIVATION: tl.constexpr):
    """0: SiLU(gate) * up; 1: gpt-oss's clamped SwiGLU, (up + 1) * gate * sigmoid(alpha * gate)."""
    if ACTIVATION == 1:
        gate = tl.minimum(gate, limit)
        up = tl.minimum(tl.maximum(up, -limit), limit)
        return (up + 1.0) * gate * tl.sigmoid(alpha * gate)
    return gate * tl.sigmoid(gate) * up
