"""Pieces both Triton MoE paths (grouped GEMM and per-pair GEMV) share: E2M1 decoding and the activation."""

from __future__ import annotations

import torch
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
def nibble_pair_halves(words, p: tl.constexpr):
    """Nibbles p and p + 4 (p < 4) of each uint32 word placed at once into the two 16-bit halves of a word:
    magnitude at bits 6-8, sign at bit 15 of each half. A half is then the bf16 (and the top of the fp32)
    of the E2M1 value times 2^-126; the code for 0.5 is a subnormal."""
    if p <= 1:  # noqa: SIM108 (a compile-time branch: the other shift would be negative)
        magnitude = (words << (6 - 4 * p)) & 0x01C001C0
    else:
        magnitude = (words >> (4 * p - 6)) & 0x01C001C0
    return magnitude | ((words << (12 - 4 * p)) & 0x80008000)


def as_words(blocks: torch.Tensor) -> torch.Tensor | None:
    """MXFP4 blocks [E, rows, ...] as int32 words [E, rows, K/8] (word j holds k = 8j .. 8j + 7, nibble i
    at bits 4i), or None where the bytes do not allow it (a row not a whole number of aligned words)."""
    flat = blocks.flatten(2)
    if flat.stride(2) != 1 or flat.shape[2] % 4 or flat.stride(1) % 4 or flat.storage_offset() % 4:
        return None
    return flat.view(torch.int32)


def words_of(w13: torch.Tensor, w2: torch.Tensor, wanted: bool) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Both expert matrices as words where the tile asks for them and the bytes allow it, else None (the
    same values are then decoded from the bytes)."""
    words = (as_words(w13), as_words(w2)) if wanted else (None, None)
    return words if all(w is not None for w in words) else None


@triton.jit
def load_mxfp4_words(w_base, rows, row_ok, k0, K, stride_row, BLOCK_K: tl.constexpr):
    """Rows of an MXFP4 matrix read as uint32 words at k0..k0+BLOCK_K: [rows, BLOCK_K/8] (as_words' layout;
    stride_row counts words), zeros past the edges."""
    j = tl.arange(0, BLOCK_K // 8)
    return tl.load(
        w_base + rows[:, None] * stride_row + (k0 // 8 + j)[None, :],
        mask=row_ok[:, None] & (k0 + 8 * j < K)[None, :],
        other=0,
    ).to(tl.uint32, bitcast=True)


@triton.jit
def load_mxfp4_blocks(w_base, rows, row_ok, k0, K, stride_row, BLOCK_K: tl.constexpr):
    """load_mxfp4_words with offsets and mask written in whole 32-value blocks (4 words, 16 bytes), so
    that Triton can load a block at once (it cannot know that 16 divides stride_row, K/8): the weights-
    first GEMMs' words then reach shared memory in 16-byte cp.async copies, not 4-byte ones with bank
    conflicts (sm90; the GEMV measured slower this way and keeps load_mxfp4_words)."""
    j = tl.arange(0, BLOCK_K // 8)
    return tl.load(
        w_base + (rows[:, None] * (stride_row // 4) + k0 // 32) * 4 + j[None, :],
        mask=row_ok[:, None] & (k0 + 32 * (j // 4) < K)[None, :],
        other=0,
    ).to(tl.uint32, bitcast=True)


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
def block_pairs(sorted_pairs_ptr, block, num_pairs, BLOCK_M: tl.constexpr):
    """Block `block`'s BLOCK_M padded slots, the (token, k) pair in each, and which slots hold one."""
    slots = block * BLOCK_M + tl.arange(0, BLOCK_M)
    pair = tl.load(sorted_pairs_ptr + slots)
    return slots, pair, pair < num_pairs


@triton.jit
def activate(gate, up, alpha, limit, ACTIVATION: tl.constexpr):
    """0: SiLU(gate) * up; 1: gpt-oss's clamped SwiGLU, (up + 1) * gate * sigmoid(alpha * gate)."""
    if ACTIVATION == 1:
        gate = tl.minimum(gate, limit)
        up = tl.minimum(tl.maximum(up, -limit), limit)
        return (up + 1.0) * gate * tl.sigmoid(alpha * gate)
    return gate * tl.sigmoid(gate) * up
