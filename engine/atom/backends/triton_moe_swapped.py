"""The grouped MoE GEMMs computed weights-first: out^T = W @ x^T, for MXFP4 and dense experts.

The row-major kernels (triton_moe.py) multiply x [pairs, K] by the decoded weights as the dot's second
operand, which wgmma reads from shared memory, and read the activations at stride 2 to match the nibble
order. Here the roles swap, as triton_kernels does on Hopper: the weight tile [BLOCK_N rows, BLOCK_K] is
decoded in registers into the dot's first operand (which wgmma may take from registers), the pairs'
activations are the second operand, loaded contiguously [BLOCK_M, BLOCK_K] (cp.async-pipelined on sm90),
and the accumulator is [BLOCK_N, BLOCK_M]. The token block becomes the MMA's N side, which can be as narrow
as 16, so small groups waste less. Decoded from the checkpoint layout, a word's values belong to several
lanes of the MMA fragment and Triton still stages the decoded tile through shared memory; from the
fragment layout (mx_layout.py) they land in the operand's registers directly.

The math is the row-major kernels': the exact MXFP4 values (nibble times its block's power of two, in the
activations' dtype), fp32 sums, the routing weight applied to each pair's fp32 output.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .triton_common import dot
from .triton_moe_common import (
    activate,
    block_pairs,
    byte_scales,
    e2m1_as_half,
    gate_up_rows,
    load_dense,
    load_mx_scales,
    load_mxfp4,
    load_mxfp4_blocks,
    nibble_pair_halves,
)

DENSE, BYTES, WORDS, FRAGMENTS = 0, 1, 2, 3  # how the weight tile is read (DECODE below)
TWO_126 = tl.constexpr(8.507059173023462e37)  # 2^126: undoes the placement's 2^-126 (exact)


@triton.jit
def _nibble_pair(words, scale, dtype: tl.constexpr, p: tl.constexpr):
    """Nibbles p and p + 4 of each word times their block scale (_scale_of), in `dtype`: placed as bf16
    bits (the value times 2^-126, nibble_pair_halves), then two multiplies, by 2^126 and by 2^(e - 127).
    Exact either way (at most 2 significant bits times powers of two): for bf16 the two halves are
    multiplied as they lie (bf16x2 on sm90: half the instructions of the fp32 route), else through fp32."""
    halves = nibble_pair_halves(words, p)
    if dtype == tl.bfloat16:
        low = halves.to(tl.uint16).to(tl.bfloat16, bitcast=True)
        high = (halves >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
        return (low * TWO_126) * scale, (high * TWO_126) * scale
    low = (halves << 16).to(tl.float32, bitcast=True)
    high = (halves & 0xFFFF0000).to(tl.float32, bitcast=True)
    return ((low * TWO_126) * scale).to(dtype), ((high * TWO_126) * scale).to(dtype)


@triton.jit
def _fragment_tile(w_base, s_base, rows, k0, K, stride_scale_row, dtype, BLOCK_K: tl.constexpr):
    """W[rows, k0:k0+BLOCK_K] from the fragment layout (mx_layout.fragment_words): each word holds the
    8 values one lane of an MMA's 16 x 16 register fragment needs, so decoding stays in the thread. Word
    (group, f, lane g*4+t), nibble n = 4 qk + 2 qr + b: row 16 group + 8 qr + g, k 16 f + 8 qk + 2 t + b.
    Tensors are [frags, groups, g, t] so that Triton spreads warps over the row groups, as the MMA does."""
    rows_n: tl.constexpr = rows.shape[0]
    group = tl.min(tl.reshape(rows, [rows_n // 16, 16]), axis=1) // 16
    f = k0 // 16 + tl.arange(0, BLOCK_K // 16)
    g = tl.arange(0, 8)
    t = tl.arange(0, 4)
    lane = g[None, None, :, None] * 4 + t[None, None, None, :]
    where = (group[None, :, None, None] * (K // 16) + f[:, None, None, None]) * 32 + lane
    inside = (f < K // 16)[:, None, None, None] & (lane >= 0)
    words = tl.load(w_base + where, mask=inside, other=0).to(tl.uint32, bitcast=True)  # [frags, groups, 8, 4]
    scale_row = 16 * group[None, :, None, None] + g[None, None, :, None]
    scale_at = s_base + scale_row * stride_scale_row + (f // 2)[:, None, None, None] + 0 * lane
    upper = _scale_of(tl.load(scale_at, mask=inside, other=127), dtype)  # rows g (qr = 0)
    lower = _scale_of(tl.load(scale_at + 8 * stride_scale_row, mask=inside, other=127), dtype)  # rows g + 8
    n0, n4 = _nibble_pair(words, upper, dtype, 0)
    n1, n5 = _nibble_pair(words, upper, dtype, 1)
    n2, n6 = _nibble_pair(words, lower, dtype, 2)
    n3, n7 = _nibble_pair(words, lower, dtype, 3)
    values = tl.join(tl.join(tl.join(n0, n4), tl.join(n2, n6)), tl.join(tl.join(n1, n5), tl.join(n3, n7)))
    # [frags, groups, g, t, qk, qr, b] -> [groups, qr, g, frags, qk, t, b] = [rows, k]
    return tl.reshape(tl.permute(values, (1, 5, 2, 0, 4, 3, 6)), [rows_n, BLOCK_K])


@triton.jit
def _scale_of(exponent, dtype: tl.constexpr):
    """E8M0 exponents as 2^(e - 127) in bf16 for bf16 tiles, else in fp32 (what _nibble_pair multiplies
    by); e = 0 the subnormal 2^-127 (either format's exponent field and bias are fp32's)."""
    if dtype == tl.bfloat16:
        bits = exponent.to(tl.uint16)
        scale = tl.where(bits == 0, 0x40, bits << 7).to(tl.uint16).to(tl.bfloat16, bitcast=True)
    else:
        bits = exponent.to(tl.uint32)
        scale = tl.where(bits == 0, 0x400000, bits << 23).to(tl.float32, bitcast=True)
    return scale


@triton.jit
def _weight_tile(w_base, s_base, rows, row_ok, k0, K, stride_row, stride_scale_row, dtype,
                 DECODE: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    """W[rows, k0:k0+BLOCK_K] in `dtype` (k in order), the dot's first operand:
    DENSE as stored; BYTES each nibble through fp16 and an fp32 scale multiply (any dtype);
    WORDS uint32 words of 8 nibbles in 16-byte blocks, two nibbles a shift-and-mask into bf16 bits, then
    multiplied in bf16 pairs for bf16 tiles, through fp32 otherwise (_nibble_pair). The decoded 0.5 passes
    through a subnormal, as in the GEMV's words path: kept by CUDA's multiplies (only sm90 tables mark
    tiles `words`)."""
    if DECODE == 3:
        return _fragment_tile(w_base, s_base, rows, k0, K, stride_scale_row, dtype, BLOCK_K)
    if DECODE == 2:
        words = load_mxfp4_blocks(w_base, rows, row_ok, k0, K, stride_row, BLOCK_K)
        exponent = load_mx_scales(s_base, rows, row_ok, k0, K, stride_scale_row, BLOCK_K)
        scale = _scale_of(exponent, dtype)
        rows_n: tl.constexpr = scale.shape[0]
        scale = tl.reshape(
            tl.broadcast_to(scale[:, :, None], [rows_n, BLOCK_K // 32, 4]), [rows_n, BLOCK_K // 8]
        )
        n0, n4 = _nibble_pair(words, scale, dtype, 0)
        n1, n5 = _nibble_pair(words, scale, dtype, 1)
        n2, n6 = _nibble_pair(words, scale, dtype, 2)
        n3, n7 = _nibble_pair(words, scale, dtype, 3)
        # joined so that the new last axes are k's bits 2, 1, 0 within the word
        even = tl.join(tl.join(n0, n4), tl.join(n2, n6))
        odd = tl.join(tl.join(n1, n5), tl.join(n3, n7))
        return tl.reshape(tl.join(even, odd), [rows_n, BLOCK_K])
    if DECODE == 1:
        packed, exponent = load_mxfp4(
            w_base, s_base, rows, row_ok, k0, K, stride_row, stride_scale_row, BLOCK_K
        )
        factor = byte_scales(exponent, BLOCK_K)
        low = (e2m1_as_half(packed & 0xF).to(tl.float32) * factor).to(dtype)
        high = (e2m1_as_half(packed >> 4).to(tl.float32) * factor).to(dtype)
        rows_n: tl.constexpr = low.shape[0]
        return tl.reshape(tl.join(low, high), [rows_n, BLOCK_K])  # byte j: k = 2j (low), 2j + 1 (high)
    return load_dense(w_base, rows, row_ok, k0, K, stride_row, BLOCK_K).to(dtype)


@triton.jit
def gate_up_kernel(
    x_ptr,
    w_ptr,
    scale_ptr,
    bias_ptr,
    h_ptr,
    sorted_pairs_ptr,
    block_expert_ptr,
    num_pairs,
    hidden,
    inter,
    stride_xt,
    stride_we,
    stride_wr,
    stride_se,
    stride_sr,
    stride_be,
    stride_ht,
    alpha,
    limit,
    TOP_K: tl.constexpr,
    ACTIVATION: tl.constexpr,
    DECODE: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    block = tl.program_id(1)  # column blocks vary fastest: a block's activations stay in L2 for all of them
    expert = tl.load(block_expert_ptr + block)
    if expert < 0:  # a padding block past the last expert's pairs
        return
    slots, pair, pair_ok = block_pairs(sorted_pairs_ptr, block, num_pairs, BLOCK_M)
    token = tl.where(pair_ok, pair // TOP_K, 0)
    all_slots = tl.full([BLOCK_M], 1, tl.int1)
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < inter
    # no masks in the loop: rows past the edge read the last one, padding slots token 0 (never stored)
    inside = tl.minimum(cols, inter - 1)
    all_rows = tl.full([BLOCK_N], 1, tl.int1)
    gate_rows, up_rows = gate_up_rows(inside, inter, ACTIVATION)
    w_gate, w_up = gate_rows, up_rows
    if DECODE == 3:  # the fragment layout stacks [gate | up] for every activation
        w_gate, w_up = inside, inter + inside
    w_base = w_ptr + expert.to(tl.int64) * stride_we
    s_base = scale_ptr + expert.to(tl.int64) * stride_se
    gate = tl.zeros([BLOCK_N, BLOCK_M], tl.float32)
    up = tl.zeros([BLOCK_N, BLOCK_M], tl.float32)
    for k0 in range(0, hidden, BLOCK_K):
        x_t = tl.trans(load_dense(x_ptr, token, all_slots, k0, hidden, stride_xt, BLOCK_K))
        w = _weight_tile(w_base, s_base, w_gate, all_rows, k0, hidden, stride_wr, stride_sr, x_t.dtype,
                         DECODE, BLOCK_K)  # fmt: skip
        gate = dot(w, x_t, gate, IEEE)
        w = _weight_tile(w_base, s_base, w_up, all_rows, k0, hidden, stride_wr, stride_sr, x_t.dtype,
                         DECODE, BLOCK_K)  # fmt: skip
        up = dot(w, x_t, up, IEEE)
    if HAS_BIAS:
        b_base = bias_ptr + expert * stride_be
        gate += tl.load(b_base + gate_rows, mask=col_ok, other=0.0).to(tl.float32)[:, None]
        up += tl.load(b_base + up_rows, mask=col_ok, other=0.0).to(tl.float32)[:, None]
    h = activate(gate, up, alpha, limit, ACTIVATION)
    tl.store(
        h_ptr + slots[None, :] * stride_ht + cols[:, None],
        h.to(h_ptr.dtype.element_ty),
        mask=col_ok[:, None] & pair_ok[None, :],
    )


@triton.jit
def down_kernel(
    h_ptr,
    w_ptr,
    scale_ptr,
    bias_ptr,
    routing_weights_ptr,
    out_ptr,
    sorted_pairs_ptr,
    block_expert_ptr,
    num_pairs,
    hidden,
    inter,
    stride_ht,
    stride_we,
    stride_wr,
    stride_se,
    stride_sr,
    stride_be,
    stride_ot,
    DECODE: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    block = tl.program_id(1)  # column blocks vary fastest: a block's activations stay in L2 for all of them
    expert = tl.load(block_expert_ptr + block)
    if expert < 0:  # a padding block past the last expert's pairs
        return
    slots, pair, pair_ok = block_pairs(sorted_pairs_ptr, block, num_pairs, BLOCK_M)
    cols = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < hidden
    # no masks in the loop: rows past the edge read the last one, padding slots their own rows of h
    # (allocated, never written; a column of the product depends on its own slot only, never stored)
    rows = tl.minimum(cols, hidden - 1)
    all_rows = tl.full([BLOCK_N], 1, tl.int1)
    all_slots = tl.full([BLOCK_M], 1, tl.int1)
    w_base = w_ptr + expert.to(tl.int64) * stride_we
    s_base = scale_ptr + expert.to(tl.int64) * stride_se
    acc = tl.zeros([BLOCK_N, BLOCK_M], tl.float32)
    for k0 in range(0, inter, BLOCK_K):
        h_t = tl.trans(load_dense(h_ptr, slots, all_slots, k0, inter, stride_ht, BLOCK_K))
        w = _weight_tile(w_base, s_base, rows, all_rows, k0, inter, stride_wr, stride_sr, h_t.dtype,
                         DECODE, BLOCK_K)  # fmt: skip
        acc = dot(w, h_t, acc, IEEE)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + expert * stride_be + cols, mask=col_ok, other=0.0).to(tl.float32)[:, None]
    acc *= tl.load(routing_weights_ptr + pair, mask=pair_ok, other=0.0)[None, :]
    tl.store(
        out_ptr + pair[None, :] * stride_ot + cols[:, None],
        acc.to(out_ptr.dtype.element_ty),
        mask=col_ok[:, None] & pair_ok[None, :],
    )
