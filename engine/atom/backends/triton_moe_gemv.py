"""Decode-sized MoE without tensor cores: one program per (token, slot) pair and BLOCK_N output columns for
gate/up, one per token and BLOCK_N output rows for down (summing the token's k slots itself).

With a handful of tokens each pair has an expert to itself, so a 16-row GEMM tile is mostly padding and the
MXFP4 upcast into the tensor cores' layout costs more than the multiply. Here a program streams its
expert's rows once, decodes them in registers and accumulates x * w in fp32; no grouping by expert is
needed, and no pass over [pairs, H] partials follows. The math is the GEMM path's: fp32 products of the
exact weight values, fp32 sums, the slots summed in fp32 and rounded once.

MXFP4 rows are decoded one of two ways (the tile's `words` flag), the same values either way:
  BYTES  packed bytes, each nibble through an fp16 bit pattern converted to fp32 (triton_moe_common);
  WORDS  uint32 words of 8 nibbles, two at a time (nibbles p and p + 4, 16 bits apart) placed by two
         shifts and masks into the two halves of a word, each half then the top of an fp32 that is the
         value times 2^-126; one scale multiply per 32 values instead of one per value. The decoded 0.5 is
         an fp32 subnormal: CUDA's fp32 multiply keeps it, AMD's default is unchecked, so only tiles
         marked `words` (no gfx table has one) take this path. Here gate/up also writes h for the down
         kernel in the order its nibbles come (h[8w + i] at i * inter/8 + w, fp32, already scaled), so the
         down kernel's activations are plain vector loads.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from . import routing
from .triton_moe_common import (
    ACTIVATIONS,
    activate,
    byte_scales,
    e2m1_as_half,
    gate_up_rows,
    load_dense,
    load_mx_scales,
    load_mxfp4,
    load_mxfp4_words,
    nibble_pair_halves,
    words_of,
)

DENSE, BYTES, WORDS = 0, 1, 2  # how a program reads its expert's rows (module docstring)
# WORDS: x is scaled up by 2^32 so that x * (a weight times 2^-126) stays a normal fp32 for any |x| above
# 2^-31; the row sums are scaled back by 2^94 once (powers of two: exact)
X_SHIFT = tl.constexpr(4294967296.0)  # 2^32
SUM_SHIFT = tl.constexpr(1.9807040628566084e28)  # 2^94


@triton.jit
def nibble_pair_as_f32(words, p: tl.constexpr):
    """Nibbles p and p + 4 (p < 4) of each uint32 word as fp32: their E2M1 values times 2^-126 (a half of
    nibble_pair_halves moved to the top of a 32-bit word: magnitude in bits 22-24, sign in bit 31)."""
    halves = nibble_pair_halves(words, p)
    low = (halves << 16).to(tl.float32, bitcast=True)
    high = (halves & 0xFFFF0000).to(tl.float32, bitcast=True)
    return low, high


@triton.jit
def _x_nibble(x_row, k0, K, i: tl.constexpr, BLOCK_W: tl.constexpr, X_NIBBLE_MAJOR: tl.constexpr):
    """x[k0 + 8j + i] for the BLOCK_W words j, in fp32 times 2^32: from x as it is, or from the nibble-major
    copy gate/up writes (x[8w + i] at i * K/8 + w, already scaled)."""
    j = tl.arange(0, BLOCK_W)
    if X_NIBBLE_MAJOR:
        x = tl.load(x_row + i * (K // 8) + k0 // 8 + j, mask=k0 + 8 * j < K, other=0.0)
    else:
        k = k0 + 8 * j + i
        x = tl.load(x_row + k, mask=k < K, other=0.0).to(tl.float32) * X_SHIFT
    return x


@triton.jit
def _words_times_x(words, x_row, k0, K, BLOCK_W: tl.constexpr, X_NIBBLE_MAJOR: tl.constexpr):
    """[rows, BLOCK_W] words (k0 .. k0 + 8 BLOCK_W) times x: per-word fp32 sums, in units of 2^-94."""
    part = tl.zeros(words.shape, tl.float32)
    for p in tl.static_range(4):  # nibble i of word j holds k0 + 8j + i
        low, high = nibble_pair_as_f32(words, p)
        part += low * _x_nibble(x_row, k0, K, p, BLOCK_W, X_NIBBLE_MAJOR)[None, :]
        part += high * _x_nibble(x_row, k0, K, p + 4, BLOCK_W, X_NIBBLE_MAJOR)[None, :]
    return part


@triton.jit
def _row_dot(
    x_row, w_base, s_base, rows, row_ok, K, stride_row, stride_scale_row,
    DECODE: tl.constexpr, ROWS: tl.constexpr, BLOCK_K: tl.constexpr, ACC_K: tl.constexpr,
    X_NIBBLE_MAJOR: tl.constexpr = False,
):  # fmt: skip
    """W[rows, :K] @ x[:K] in fp32 -> [ROWS]; for WORDS, stride_row counts words (int32) not bytes, and x
    may be the nibble-major copy (_x_nibble)."""
    acc = tl.zeros([ROWS, ACC_K], tl.float32)
    for k0 in range(0, K, BLOCK_K):
        if DECODE == 2:  # WORDS: acc [rows, BLOCK_K / 32], each 32-value block scaled once
            words = load_mxfp4_words(w_base, rows, row_ok, k0, K, stride_row, BLOCK_K)
            exponent = load_mx_scales(s_base, rows, row_ok, k0, K, stride_scale_row, BLOCK_K)
            part = _words_times_x(words, x_row, k0, K, BLOCK_K // 8, X_NIBBLE_MAJOR)
            blocks = tl.sum(tl.reshape(part, [ROWS, BLOCK_K // 32, 4]), axis=2)
            acc += blocks * tl.exp2(exponent.to(tl.float32) - 127.0)
        elif DECODE == 1:  # BYTES: acc [rows, BLOCK_K / 2], x as (even k, odd k) halves matching the nibbles
            k = k0 + 2 * tl.arange(0, BLOCK_K // 2)
            x_even = tl.load(x_row + k, mask=k < K, other=0.0).to(tl.float32)
            x_odd = tl.load(x_row + k + 1, mask=k < K, other=0.0).to(tl.float32)
            packed, exponent = load_mxfp4(
                w_base, s_base, rows, row_ok, k0, K, stride_row, stride_scale_row, BLOCK_K
            )
            factor = byte_scales(exponent, BLOCK_K)
            low = e2m1_as_half(packed & 0xF).to(tl.float32)
            high = e2m1_as_half(packed >> 4).to(tl.float32)
            # both nibbles of a byte share its block's scale, a power of two: scaling the sum is exact
            acc += (low * x_even[None, :] + high * x_odd[None, :]) * factor
        else:  # DENSE: acc [rows, BLOCK_K]
            k = k0 + tl.arange(0, BLOCK_K)
            x = tl.load(x_row + k, mask=k < K, other=0.0).to(tl.float32)
            w = load_dense(w_base, rows, row_ok, k0, K, stride_row, BLOCK_K)
            acc += w.to(tl.float32) * x[None, :]
    out = tl.sum(acc, axis=1)
    if DECODE == 2:
        out = out * SUM_SHIFT
    return out


# How a token's experts reach the kernels (ROUTING): GIVEN as ids and weights (routed by backends.routing),
# or routed inside each program from the router logits (top-k over at most a few hundred experts is cheaper
# than the launches of routing apart), with the semantics of backends.routing's names mapped here.
GIVEN = 0
IN_KERNEL = {routing.TOPK_SOFTMAX: 1, routing.SOFTMAX_TOPK: 2, routing.SOFTMAX_TOPK_RENORM: 3}


@triton.jit
def _token_experts(
    token, ids_ptr, weights_ptr, logits_ptr, stride_lt, num_experts,
    TOP_K: tl.constexpr, ROUTING: tl.constexpr, SLOTS: tl.constexpr, EXPERTS: tl.constexpr,
):  # fmt: skip
    """-> (expert ids [SLOTS] int64, routing weights [SLOTS] fp32) of one token; slots past TOP_K unused."""
    slot = tl.arange(0, SLOTS)
    if ROUTING == 0:
        ids = tl.load(ids_ptr + token * TOP_K + slot, mask=slot < TOP_K, other=0).to(tl.int64)
        weights = tl.load(weights_ptr + token * TOP_K + slot, mask=slot < TOP_K, other=0.0)
    else:
        e = tl.arange(0, EXPERTS)
        scores = tl.load(
            logits_ptr + token.to(tl.int64) * stride_lt + e, mask=e < num_experts, other=-float("inf")
        ).to(tl.float32)
        if ROUTING != 1:  # softmax over every expert first
            scores = tl.exp(scores - tl.max(scores, axis=0))
            scores = scores / tl.sum(scores, axis=0)
        ids = tl.zeros([SLOTS], tl.int64)
        top = tl.full([SLOTS], -float("inf"), tl.float32)
        for k in tl.static_range(TOP_K):  # the largest left, the lowest expert id among equals
            best = tl.max(scores, axis=0)
            at = tl.argmax(scores, axis=0)
            ids = tl.where(slot == k, at.to(tl.int64), ids)
            top = tl.where(slot == k, best, top)
            scores = tl.where(e == at, -float("inf"), scores)
        if ROUTING == 1:  # softmax over the k chosen logits
            top = tl.exp(top - tl.max(top, axis=0))
            weights = top / tl.sum(top, axis=0)
        elif ROUTING == 3:  # the k probabilities renormalised
            top = tl.where(slot < TOP_K, top, 0.0)
            weights = top / tl.sum(top, axis=0)
        else:
            weights = top
    return ids, weights


@triton.jit
def _pick(values, slot, k):
    """values[k] of a [SLOTS] vector, as a scalar."""
    return tl.sum(tl.where(slot == k, values, tl.zeros_like(values)), axis=0)


@triton.jit
def _gate_up_gemv_kernel(
    x_ptr, ids_ptr, weights_ptr, logits_ptr, w_ptr, scale_ptr, bias_ptr, h_ptr, hidden, inter, num_experts,
    stride_xt, stride_lt, stride_we, stride_wr, stride_se, stride_sr, stride_be, stride_ht, alpha, limit,
    TOP_K: tl.constexpr, ROUTING: tl.constexpr, SLOTS: tl.constexpr, EXPERTS: tl.constexpr,
    ACTIVATION: tl.constexpr, DECODE: tl.constexpr, HAS_BIAS: tl.constexpr,
    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, ACC_K: tl.constexpr,
):  # fmt: skip
    pair = tl.program_id(0)
    ids, _ = _token_experts(
        pair // TOP_K, ids_ptr, weights_ptr, logits_ptr, stride_lt, num_experts, TOP_K, ROUTING, SLOTS, EXPERTS
    )  # fmt: skip
    expert = _pick(ids, tl.arange(0, SLOTS), pair % TOP_K)
    # BLOCK_N output columns = 2 BLOCK_N rows of w13 in one pass: (gate, up) of each column side by side
    r = tl.arange(0, 2 * BLOCK_N)
    cols = tl.program_id(1) * BLOCK_N + r // 2
    gate_rows, up_rows = gate_up_rows(cols, inter, ACTIVATION)
    rows = tl.where(r % 2 == 1, up_rows, gate_rows)
    row_ok = cols < inter
    y = _row_dot(
        x_ptr + (pair // TOP_K).to(tl.int64) * stride_xt, w_ptr + expert * stride_we,
        scale_ptr + expert * stride_se, rows, row_ok, hidden, stride_wr, stride_sr,
        DECODE, 2 * BLOCK_N, BLOCK_K, ACC_K,
    )  # fmt: skip
    if HAS_BIAS:
        y += tl.load(bias_ptr + expert * stride_be + rows, mask=row_ok, other=0.0).to(tl.float32)
    gate, up = tl.split(tl.reshape(y, [BLOCK_N, 2]))
    h = activate(gate, up, alpha, limit, ACTIVATION).to(x_ptr.dtype.element_ty)  # rounded as x, always
    out_cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    if DECODE == 2:  # nibble-major for the down kernel's words, scaled as _x_nibble reads it
        at = (out_cols % 8) * (inter // 8) + out_cols // 8
        tl.store(h_ptr + pair * stride_ht + at, h.to(tl.float32) * X_SHIFT, mask=out_cols < inter)
    else:
        tl.store(h_ptr + pair * stride_ht + out_cols, h, mask=out_cols < inter)


@triton.jit
def _down_gemv_kernel(
    h_ptr, ids_ptr, weights_ptr, logits_ptr, w_ptr, scale_ptr, bias_ptr, out_ptr, hidden, inter, num_experts,
    stride_ht, stride_lt, stride_we, stride_wr, stride_se, stride_sr, stride_be, stride_ot,
    TOP_K: tl.constexpr, ROUTING: tl.constexpr, SLOTS: tl.constexpr, EXPERTS: tl.constexpr,
    DECODE: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    ACC_K: tl.constexpr,
):  # fmt: skip
    token = tl.program_id(0)
    ids, weights = _token_experts(
        token, ids_ptr, weights_ptr, logits_ptr, stride_lt, num_experts, TOP_K, ROUTING, SLOTS, EXPERTS
    )  # fmt: skip
    rows = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < hidden
    out = tl.zeros([BLOCK_N], tl.float32)
    for slot in tl.static_range(TOP_K):  # the token's slots in order, summed here in fp32
        pair = token * TOP_K + slot
        expert = _pick(ids, tl.arange(0, SLOTS), slot)
        y = _row_dot(
            h_ptr + pair.to(tl.int64) * stride_ht, w_ptr + expert * stride_we, scale_ptr + expert * stride_se,
            rows, row_ok, inter, stride_wr, stride_sr, DECODE, BLOCK_N, BLOCK_K, ACC_K, DECODE == 2,
        )  # fmt: skip
        if HAS_BIAS:
            y += tl.load(bias_ptr + expert * stride_be + rows, mask=row_ok, other=0.0).to(tl.float32)
        out += y * _pick(weights, tl.arange(0, SLOTS), slot)
    tl.store(out_ptr + token.to(tl.int64) * stride_ot + rows, out.to(out_ptr.dtype.element_ty), mask=row_ok)


def gate_up_down(x, weights, ids, ex, spec, tile, alloc, logits=None) -> torch.Tensor:
    """-> [T, H] in x's dtype: the layer's output, the k slots summed. Routed by `weights` and `ids`, or,
    where `logits` are given instead, inside the kernels (spec.routing must be in IN_KERNEL). `ex` is
    triton_moe.Experts; the tile's block_n, block_k, num_warps, num_stages and words pick the launches."""
    inter, hidden = spec.intermediate_size, spec.hidden_size
    tokens = x.shape[0]
    num_pairs = tokens * spec.top_k
    w13, w2, decode = ex.w13, ex.w2, DENSE
    if spec.quant == "mxfp4":
        words = words_of(ex.w13, ex.w2, tile.words)
        (w13, w2), decode = (words, WORDS) if words else ((w13, w2), BYTES)
    acc_k = {DENSE: tile.block_k, BYTES: tile.block_k // 2, WORDS: tile.block_k // 32}[decode]
    if logits is None:  # the logits pointer is never read
        ids_arg, weights_arg, logits_arg, stride_lt = ids.flatten(), weights.float().contiguous(), x, 0
        routed = {"ROUTING": GIVEN, "EXPERTS": 1}
    else:  # the ids and weights pointers are never read
        ids_arg, weights_arg, logits_arg, stride_lt = x, x, logits, logits.stride(0)
        routed = {"ROUTING": IN_KERNEL[spec.routing], "EXPERTS": triton.next_power_of_2(spec.num_experts)}
    meta = {
        "TOP_K": spec.top_k, "SLOTS": triton.next_power_of_2(spec.top_k), **routed,
        "DECODE": decode, "HAS_BIAS": spec.has_bias, "BLOCK_N": tile.block_n, "BLOCK_K": tile.block_k,
        "ACC_K": acc_k, "num_warps": tile.num_warps, "num_stages": tile.num_stages,
    }  # fmt: skip
    h = alloc(num_pairs, inter, dtype=torch.float32 if decode == WORDS else x.dtype, device=x.device)
    _gate_up_gemv_kernel[(num_pairs, triton.cdiv(inter, tile.block_n))](
        x, ids_arg, weights_arg, logits_arg, w13, ex.s13, ex.b13, h, hidden, inter, spec.num_experts,
        x.stride(0), stride_lt, w13.stride(0), w13.stride(1), ex.s13.stride(0), ex.s13.stride(1),
        ex.b13.stride(0), h.stride(0), spec.swiglu_alpha, spec.swiglu_limit,
        ACTIVATION=ACTIVATIONS[spec.activation], **meta,
    )  # fmt: skip
    out = alloc(tokens, hidden, dtype=x.dtype, device=x.device)
    _down_gemv_kernel[(tokens, triton.cdiv(hidden, tile.block_n))](
        h, ids_arg, weights_arg, logits_arg, w2, ex.s2, ex.b2, out, hidden, inter, spec.num_experts,
        h.stride(0), stride_lt, w2.stride(0), w2.stride(1), ex.s2.stride(0), ex.s2.stride(1),
        ex.b2.stride(0), out.stride(0), **meta,
    )  # fmt: skip
    return out
