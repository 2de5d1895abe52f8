"""Decode-sized MoE without tensor cores: one program per (token, slot) pair and BLOCK_N output rows.

With a handful of tokens each pair has an expert to itself, so a 16-row GEMM tile is mostly padding and the
MXFP4 upcast into the tensor cores' layout costs more than the multiply. Here a program streams its
expert's rows once, decodes the nibbles in registers and accumulates x * w in fp32; no grouping by expert is
needed. The math is the GEMM path's: fp32 products of the exact weight values, fp32 sums.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_moe_common import (
    ACTIVATIONS,
    activate,
    byte_scales,
    e2m1_as_float,
    gate_up_rows,
    load_dense,
    load_mxfp4,
)


@triton.jit
def _load_x(x_row, k0, K, MXFP4: tl.constexpr, BLOCK_K: tl.constexpr):
    """One activation row from k0 in fp32; for MXFP4 as (even k, odd k) halves matching the nibbles."""
    # one return: Triton types every branch's return, even constexpr-dead ones
    if MXFP4:
        k = k0 + 2 * tl.arange(0, BLOCK_K // 2)
        even = tl.load(x_row + k, mask=k < K, other=0.0).to(tl.float32)
        odd = tl.load(x_row + k + 1, mask=k < K, other=0.0).to(tl.float32)
    else:
        k = k0 + tl.arange(0, BLOCK_K)
        even = tl.load(x_row + k, mask=k < K, other=0.0).to(tl.float32)
        odd = even
    return even, odd


@triton.jit
def _rows_times_x(
    acc, x_even, x_odd, w_base, s_base, rows, row_ok, k0, K, stride_row, stride_scale_row,
    MXFP4: tl.constexpr, F32_BITS: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """acc + W[rows, k0:k0+BLOCK_K] * x elementwise; the caller sums over k once, after the loop."""
    if MXFP4:
        packed, exponent = load_mxfp4(
            w_base, s_base, rows, row_ok, k0, K, stride_row, stride_scale_row, BLOCK_K
        )
        factor = byte_scales(exponent, BLOCK_K)
        low = e2m1_as_float(packed & 0xF, F32_BITS)
        high = e2m1_as_float(packed >> 4, F32_BITS)
        # both nibbles of a byte share its block's scale, a power of two: scaling the sum is exact
        acc += (low * x_even[None, :] + high * x_odd[None, :]) * factor
    else:
        w = load_dense(w_base, rows, row_ok, k0, K, stride_row, BLOCK_K)
        acc += w.to(tl.float32) * x_even[None, :]
    return acc


@triton.jit
def _gate_up_gemv_kernel(
    x_ptr, ids_ptr, w_ptr, scale_ptr, bias_ptr, h_ptr, hidden, inter,
    stride_xt, stride_we, stride_wr, stride_se, stride_sr, stride_be, stride_ht, alpha, limit,
    TOP_K: tl.constexpr, ACTIVATION: tl.constexpr, MXFP4: tl.constexpr, F32_BITS: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, ACC_K: tl.constexpr,
):  # fmt: skip
    pair = tl.program_id(0)
    expert = tl.load(ids_ptr + pair).to(tl.int64)
    x_row = x_ptr + (pair // TOP_K).to(tl.int64) * stride_xt
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < inter
    gate_rows, up_rows = gate_up_rows(cols, inter, ACTIVATION)
    w_base, s_base = w_ptr + expert * stride_we, scale_ptr + expert * stride_se
    gate = tl.zeros([BLOCK_N, ACC_K], tl.float32)
    up = tl.zeros([BLOCK_N, ACC_K], tl.float32)
    for k0 in range(0, hidden, BLOCK_K):
        x_even, x_odd = _load_x(x_row, k0, hidden, MXFP4, BLOCK_K)
        gate = _rows_times_x(
            gate, x_even, x_odd, w_base, s_base, gate_rows, col_ok, k0, hidden, stride_wr, stride_sr, MXFP4, F32_BITS, BLOCK_K
        )  # fmt: skip
        up = _rows_times_x(
            up, x_even, x_odd, w_base, s_base, up_rows, col_ok, k0, hidden, stride_wr, stride_sr, MXFP4, F32_BITS, BLOCK_K
        )  # fmt: skip
    g = tl.sum(gate, axis=1)
    u = tl.sum(up, axis=1)
    if HAS_BIAS:
        g += tl.load(bias_ptr + expert * stride_be + gate_rows, mask=col_ok, other=0.0).to(tl.float32)
        u += tl.load(bias_ptr + expert * stride_be + up_rows, mask=col_ok, other=0.0).to(tl.float32)
    h = activate(g, u, alpha, limit, ACTIVATION)
    tl.store(h_ptr + pair * stride_ht + cols, h.to(h_ptr.dtype.element_ty), mask=col_ok)


@triton.jit
def _down_gemv_kernel(
    h_ptr, ids_ptr, w_ptr, scale_ptr, bias_ptr, routing_weights_ptr, out_ptr, hidden, inter,
    stride_ht, stride_we, stride_wr, stride_se, stride_sr, stride_be, stride_ot,
    MXFP4: tl.constexpr, F32_BITS: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr, ACC_K: tl.constexpr,
):  # fmt: skip
    pair = tl.program_id(0)
    expert = tl.load(ids_ptr + pair).to(tl.int64)
    h_row = h_ptr + pair.to(tl.int64) * stride_ht
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < hidden
    w_base, s_base = w_ptr + expert * stride_we, scale_ptr + expert * stride_se
    acc = tl.zeros([BLOCK_N, ACC_K], tl.float32)
    for k0 in range(0, inter, BLOCK_K):
        h_even, h_odd = _load_x(h_row, k0, inter, MXFP4, BLOCK_K)
        acc = _rows_times_x(
            acc, h_even, h_odd, w_base, s_base, cols, col_ok, k0, inter, stride_wr, stride_sr, MXFP4, F32_BITS, BLOCK_K
        )  # fmt: skip
    out = tl.sum(acc, axis=1)
    if HAS_BIAS:
        out += tl.load(bias_ptr + expert * stride_be + cols, mask=col_ok, other=0.0).to(tl.float32)
    out *= tl.load(routing_weights_ptr + pair)
    tl.store(out_ptr + pair * stride_ot + cols, out, mask=col_ok)


def gate_up_down(x, weights, ids, ex, spec, tile, alloc) -> torch.Tensor:
    """-> [pairs, H] fp32: each pair's down projection times its routing weight (the caller sums slots).
    `ex` is triton_moe.Experts; the tile's block_n, block_k, num_warps and num_stages size the launches."""
    inter, hidden = spec.intermediate_size, spec.hidden_size
    num_pairs = ids.numel()
    flat_ids = ids.flatten()
    mxfp4 = spec.quant == "mxfp4"
    meta = {
        "MXFP4": mxfp4, "F32_BITS": tile.f32_bits, "HAS_BIAS": spec.has_bias,
        "BLOCK_N": tile.block_n, "BLOCK_K": tile.block_k,
        "ACC_K": tile.block_k // 2 if mxfp4 else tile.block_k,
        "num_warps": tile.num_warps, "num_stages": tile.num_stages,
    }  # fmt: skip
    h = alloc(num_pairs, inter, dtype=x.dtype, device=x.device)
    _gate_up_gemv_kernel[(num_pairs, triton.cdiv(inter, tile.block_n))](
        x, flat_ids, ex.w13, ex.s13, ex.b13, h, hidden, inter,
        x.stride(0), ex.w13.stride(0), ex.w13.stride(1), ex.s13.stride(0), ex.s13.stride(1), ex.b13.stride(0),
        h.stride(0), spec.swiglu_alpha, spec.swiglu_limit,
        TOP_K=spec.top_k, ACTIVATION=ACTIVATIONS[spec.activation], **meta,
    )  # fmt: skip
    out = alloc(num_pairs, hidden, dtype=torch.float32, device=x.device)
    _down_gemv_kernel[(num_pairs, triton.cdiv(hidden, tile.block_n))](
        h, flat_ids, ex.w2, ex.s2, ex.b2, weights.contiguous(), out, hidden, inter,
        h.stride(0), ex.w2.stride(0), ex.w2.stride(1), ex.s2.stride(0), ex.s2.stride(1), ex.b2.stride(0),
        out.stride(0), **meta,
    )  # fmt: skip
    return out
