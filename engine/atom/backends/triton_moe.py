"""Fused MoE in Triton for bf16/fp16/fp32 and MXFP4 experts.

Pipeline (no host syncs, so it is CUDA-graph safe):
  route (torch, shared semantics) -> sort (token, slot) pairs by expert into BLOCK_M-padded groups ->
  kernel 1: gather token rows, gate/up GEMM, bias, activation -> h ->
  kernel 2: down GEMM, bias, times the routing weight, one row per pair -> sum over the k slots.
The final sum over slots replaces atomics: deterministic, and the same order of additions every run.

MXFP4 weights reach the GEMMs one of two ways (WEIGHTS below), the same math either way:
  SCALED_DOT  bf16/fp16 activations on tiles marked for it: tl.dot_scaled on the packed nibbles and E8M0
              scales, so Triton picks the arch's MX path (native on CDNA4/Blackwell, its own upcast elsewhere);
  UPCAST      everything else, fp32 included (dot_scaled has no fp32 format): nibbles decoded in registers,
              then a plain dot (IEEE for fp32).
A third way changes the math and is only taken when asked for (the triton_a8w4 backend):
  A8W4        activations quantized per row and per 32 values to MXFP8 (e4m3, e8m0 scales) as each tile
              is loaded, then tl.dot_scaled on both scaled operands: CDNA4's native MXFP4 MFMA
              (v_mfma_scale_f32_*_f8f6f4) on gfx950. Its error bound is in docs/backends.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from . import triton_moe_swapped as swapped
from .routing import route
from .spec import MoESpec
from .triton_common import device_arch, dot
from .triton_moe_common import (
    ACTIVATIONS,
    activate,
    block_pairs,
    byte_scales,
    e2m1_as_half,
    gate_up_rows,
    load_dense,
    load_mxfp4,
    words_of,
)
from .triton_moe_gemv import IN_KERNEL, gate_up_down
from .triton_moe_grouping import group_by_expert
from .triton_moe_support import SUPPORT  # noqa: F401  (what this backend declares)
from .triton_moe_tiles import FP8_MAX_BLOCK_M, Tile, pick_tile

DENSE, UPCAST, SCALED_DOT, A8W4, FP8 = 0, 1, 2, 3, 4  # how the weights reach the dot (module docstring)
E4M3_MAX = 448.0
MAX_GRID_Y = 65535
X_FORMATS = {torch.bfloat16: "bf16", torch.float16: "fp16"}


@triton.jit
def _load_rows(x_ptr, rows, row_ok, k0, K, stride, WEIGHTS: tl.constexpr, BLOCK_K: tl.constexpr):
    """Activations [BLOCK_M, BLOCK_K] from k0; for UPCAST as (even k, odd k) halves matching the nibbles."""
    if WEIGHTS == 1:  # UPCAST
        k = k0 + 2 * tl.arange(0, BLOCK_K // 2)
        mask = row_ok[:, None] & (k < K)[None, :]
        base = x_ptr + rows[:, None] * stride + k[None, :]
        even = tl.load(base, mask=mask, other=0.0)
        odd = tl.load(base + 1, mask=mask, other=0.0)
    else:
        k = k0 + tl.arange(0, BLOCK_K)
        even = tl.load(
            x_ptr + rows[:, None] * stride + k[None, :], mask=row_ok[:, None] & (k < K)[None, :], other=0.0
        )
        odd = even
        if WEIGHTS == 3:  # A8W4: (e4m3 values, e8m0 scales), quantized once for every dot of this k block
            even, odd = _mxfp8(even, BLOCK_K)
    return even, odd


@triton.jit
def _mxfp8(x, BLOCK_K: tl.constexpr):
    """[rows, BLOCK_K] -> e4m3 values and one e8m0 exponent per 32: the smallest power of two that keeps
    the group's largest magnitude within e4m3 (448), so nothing saturates."""
    x = x.to(tl.float32)
    rows_n: tl.constexpr = x.shape[0]
    amax = tl.max(tl.reshape(tl.abs(x), [rows_n, BLOCK_K // 32, 32]), axis=2)
    exponent = tl.clamp(tl.ceil(tl.log2(amax / 448.0)), -127.0, 127.0)
    scale = tl.reshape(
        tl.broadcast_to(tl.exp2(exponent)[:, :, None], [rows_n, BLOCK_K // 32, 32]), [rows_n, BLOCK_K]
    )
    # Rounded to e4m3's 3 mantissa bits here (to nearest, ties to even, on the fp32 bits), so the cast
    # below is exact: Triton's interpreter casts 125.5 to 64 (a rounding carry into the exponent lost).
    bits = (x / scale).to(tl.int32, bitcast=True)
    bits = (bits + 0x7FFFF + ((bits >> 20) & 1)) & -0x100000
    return bits.to(tl.float32, bitcast=True).to(tl.float8e4nv), (exponent + 127.0).to(tl.uint8)


@triton.jit
def _weight_dot(
    acc,
    x_even,
    x_odd,
    w_ptr,
    scale_ptr,
    rows,
    row_ok,
    k0,
    K,
    stride_row,
    stride_scale_row,
    WEIGHTS: tl.constexpr,
    X_FORMAT: tl.constexpr,
    IEEE: tl.constexpr,
    BLOCK_K: tl.constexpr,
    SCALE_BLOCK: tl.constexpr,
):
    """acc + x[:, k0:k0+BLOCK_K] @ W[rows, k0:k0+BLOCK_K]^T, W read along k (contiguous, vectorised)."""
    if WEIGHTS == 4:  # FP8: e4m3 times its block's scale in fp32, rounded once to x's dtype (as dequantizing)
        # BLOCK_K divides SCALE_BLOCK (fused_moe cuts the tile so): one scale per row for the whole tile
        w = load_dense(w_ptr, rows, row_ok, k0, K, stride_row, BLOCK_K).to(tl.float32)
        scale = tl.load(
            scale_ptr + (rows // SCALE_BLOCK) * stride_scale_row + k0 // SCALE_BLOCK, mask=row_ok, other=0.0
        )
        acc = dot(x_even, tl.trans((w * scale[:, None]).to(x_even.dtype)), acc, IEEE)
    elif WEIGHTS != 0:  # MXFP4, either way
        packed, exponent = load_mxfp4(
            w_ptr, scale_ptr, rows, row_ok, k0, K, stride_row, stride_scale_row, BLOCK_K
        )
        if WEIGHTS == 2:  # SCALED_DOT: dot_scaled takes exactly this layout (scales [N, K/32])
            acc = tl.dot_scaled(x_even, None, X_FORMAT, tl.trans(packed), exponent, "e2m1", acc)
        elif WEIGHTS == 3:  # A8W4: x_even, x_odd are the MXFP8 values and their scales
            acc = tl.dot_scaled(x_even, x_odd, "e4m3", tl.trans(packed), exponent, "e2m1", acc)
        else:  # UPCAST: decode in registers, then a plain dot
            factor = byte_scales(exponent, BLOCK_K)
            low = (e2m1_as_half(packed & 0xF).to(tl.float32) * factor).to(x_even.dtype)
            high = (e2m1_as_half(packed >> 4).to(tl.float32) * factor).to(x_even.dtype)
            acc = dot(x_even, tl.trans(low), acc, IEEE)
            acc = dot(x_odd, tl.trans(high), acc, IEEE)
    else:
        w = load_dense(w_ptr, rows, row_ok, k0, K, stride_row, BLOCK_K)
        acc = dot(x_even, tl.trans(w), acc, IEEE)
    return acc


@triton.jit
def _gate_up_kernel(
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
    ACTIVATION: tl.constexpr,  # 0 silu ([gate | up] halves), 1 swiglu_oai (interleaved, clamped)
    WEIGHTS: tl.constexpr,
    X_FORMAT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    SCALE_BLOCK: tl.constexpr,  # FP8 experts: the square block one scale covers
):
    expert = tl.load(block_expert_ptr + tl.program_id(0))
    if expert < 0:  # a padding block past the last expert's pairs
        return
    slots, pair, pair_ok = block_pairs(sorted_pairs_ptr, tl.program_id(0), num_pairs, BLOCK_M)
    token = pair // TOP_K
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < inter
    gate_rows, up_rows = gate_up_rows(cols, inter, ACTIVATION)
    w_base = w_ptr + expert.to(tl.int64) * stride_we
    s_base = scale_ptr + expert.to(tl.int64) * stride_se
    gate = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    up = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k0 in range(0, hidden, BLOCK_K):
        x_even, x_odd = _load_rows(x_ptr, token, pair_ok, k0, hidden, stride_xt, WEIGHTS, BLOCK_K)
        gate = _weight_dot(
            gate, x_even, x_odd, w_base, s_base, gate_rows, col_ok, k0, hidden, stride_wr, stride_sr,
            WEIGHTS, X_FORMAT, IEEE, BLOCK_K, SCALE_BLOCK,
        )  # fmt: skip
        up = _weight_dot(
            up, x_even, x_odd, w_base, s_base, up_rows, col_ok, k0, hidden, stride_wr, stride_sr,
            WEIGHTS, X_FORMAT, IEEE, BLOCK_K, SCALE_BLOCK,
        )  # fmt: skip
    if HAS_BIAS:
        b_base = bias_ptr + expert * stride_be
        gate += tl.load(b_base + gate_rows, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        up += tl.load(b_base + up_rows, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    h = activate(gate, up, alpha, limit, ACTIVATION)
    tl.store(
        h_ptr + slots[:, None] * stride_ht + cols[None, :],
        h.to(h_ptr.dtype.element_ty),
        mask=pair_ok[:, None] & col_ok[None, :],
    )


@triton.jit
def _down_kernel(
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
    WEIGHTS: tl.constexpr,
    X_FORMAT: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
    SCALE_BLOCK: tl.constexpr,  # FP8 experts: the square block one scale covers
):
    expert = tl.load(block_expert_ptr + tl.program_id(0))
    if expert < 0:  # a padding block past the last expert's pairs
        return
    slots, pair, pair_ok = block_pairs(sorted_pairs_ptr, tl.program_id(0), num_pairs, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < hidden
    w_base = w_ptr + expert.to(tl.int64) * stride_we
    s_base = scale_ptr + expert.to(tl.int64) * stride_se
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k0 in range(0, inter, BLOCK_K):
        h_even, h_odd = _load_rows(h_ptr, slots, pair_ok, k0, inter, stride_ht, WEIGHTS, BLOCK_K)
        acc = _weight_dot(
            acc, h_even, h_odd, w_base, s_base, cols, col_ok, k0, inter, stride_wr, stride_sr,
            WEIGHTS, X_FORMAT, IEEE, BLOCK_K, SCALE_BLOCK,
        )  # fmt: skip
    if HAS_BIAS:
        acc += tl.load(bias_ptr + expert * stride_be + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    acc *= tl.load(routing_weights_ptr + pair, mask=pair_ok, other=0.0)[:, None]
    tl.store(
        out_ptr + pair[:, None] * stride_ot + cols[None, :],
        acc.to(out_ptr.dtype.element_ty),
        mask=pair_ok[:, None] & col_ok[None, :],
    )


def weights_mode(spec: MoESpec, dtype: torch.dtype, tile: Tile, activation_quant: str | None = None) -> int:
    if spec.quant == "fp8_block":
        return FP8
    if spec.quant != "mxfp4":
        return DENSE
    if activation_quant == "mxfp8":
        return A8W4
    return SCALED_DOT if tile.scaled_dot and dtype in X_FORMATS else UPCAST


class Experts(NamedTuple):
    """The kernels' view of a layer's expert tensors; scales and biases the layer does not have are a
    placeholder pointer (never read: the MXFP4 / HAS_BIAS flags are off)."""

    w13: torch.Tensor
    s13: torch.Tensor
    b13: torch.Tensor
    w2: torch.Tensor
    s2: torch.Tensor
    b2: torch.Tensor

    @classmethod
    def of(
        cls, w: dict[str, torch.Tensor], spec: MoESpec, placeholder: torch.Tensor, fragments: bool = False
    ) -> Experts:
        if spec.quant == "mxfp4" and fragments:
            if "w13_fragments" not in w:
                raise ValueError(
                    "a fragments tile needs the experts in that layout: w |= mx_layout.prepare(w, ...)"
                )
            w13, s13, w2, s2 = w["w13_fragments"], w["w13_fragment_scales"], w["w2_fragments"], w["w2_scales"]
        elif spec.quant == "mxfp4":
            w13, s13, w2, s2 = w["w13_blocks"], w["w13_scales"], w["w2_blocks"], w["w2_scales"]
        elif spec.quant == "fp8_block":
            w13, s13, w2, s2 = w["w13"], w["w13_scale"], w["w2"], w["w2_scale"]
        else:
            w13, w2 = w["w13"], w["w2"]
            s13, s2 = w13, w2
        b13, b2 = placeholder, placeholder
        if spec.has_bias:
            missing = [name for name in ("w13_bias", "w2_bias") if name not in w]
            if missing:
                raise ValueError(f"the MoE spec has expert biases but the weights lack {', '.join(missing)}")
            b13, b2 = w["w13_bias"], w["w2_bias"]
        return cls(w13, s13, b13, w2, s2, b2)


def fused_moe(
    x: torch.Tensor,
    weights: torch.Tensor,
    ids: torch.Tensor,
    w: dict[str, torch.Tensor],
    spec: MoESpec,
    alloc: Callable[..., torch.Tensor] = torch.empty,
    tile: Tile | None = None,
    activation_quant: str | None = None,
) -> torch.Tensor:
    """x [T, H], routing weights/ids [T, k] -> [T, H]. `alloc` makes the workspaces (tests poison them);
    `tile` overrides the arch's table (the tile sweep); activation_quant "mxfp8": the A8W4 math (MXFP4
    experts only, GEMM tiles only)."""
    t, hidden = x.shape
    if activation_quant not in (None, "mxfp8") or (activation_quant and spec.quant != "mxfp4"):
        raise ValueError(
            f"activation_quant {activation_quant!r} needs MXFP4 experts (these are {spec.quant})"
        )
    # the per-pair GEMV reads MXFP4 or dense weights only: FP8 experts take the GEMM tiles
    fp8 = spec.quant == "fp8_block"
    cap = FP8_MAX_BLOCK_M.get(device_arch(x.device), 1 << 30) if fp8 else 1 << 30
    row_major = bool(activation_quant) or fp8  # what the weights-first kernels do not take
    # the tables' weights-first tiles were measured on MXFP4 experts; dense ones keep the row-major tiles
    swapped_ok = spec.quant == "mxfp4" and not row_major
    tile = tile or pick_tile(t * spec.top_k, spec.num_experts, x.device, row_major, cap, swapped_ok)
    if fp8 and tile.block_m == 1:
        raise ValueError(
            "FP8 experts take the GEMM tiles (block_m > 1): the GEMV reads MXFP4 or dense weights"
        )
    if row_major and tile.swapped:
        raise ValueError(
            "FP8 experts and the A8W4 math take row-major tiles: the weights-first kernels read MXFP4 or "
            "dense weights with the activations as they are"
        )
    if fp8 and tile.block_k > spec.quant_block:  # a K step within one scale column: one scale per row
        tile = tile._replace(block_k=spec.quant_block)
    experts = Experts.of(w, spec, placeholder=x, fragments=tile.fragments)
    if tile.block_m == 1:  # the GEMV sums each token's slots itself
        return gate_up_down(x, weights, ids, experts, spec, tile, alloc)
    out = _grouped_gate_up_down(x, weights, ids, experts, spec, tile, alloc, activation_quant)
    return out.view(t, spec.top_k, hidden).sum(dim=1).to(x.dtype)


def _grouped_gate_up_down(
    x: torch.Tensor,
    weights: torch.Tensor,
    ids: torch.Tensor,
    ex: Experts,
    spec: MoESpec,
    tile: Tile,
    alloc: Callable[..., torch.Tensor],
    activation_quant: str | None = None,
) -> torch.Tensor:
    """Pairs sorted into one-expert blocks, then the two GEMM kernels -> [pairs, H] fp32, each pair's
    output times its routing weight (the caller sums the k slots)."""
    hidden, inter, top_k = spec.hidden_size, spec.intermediate_size, spec.top_k
    num_pairs = ids.numel()
    sorted_pairs, block_expert = group_by_expert(ids, spec.num_experts, tile.block_m)
    common = {
        "WEIGHTS": weights_mode(spec, x.dtype, tile, activation_quant), "X_FORMAT": X_FORMATS.get(x.dtype, "fp32"),
        "HAS_BIAS": spec.has_bias, "IEEE": x.dtype == torch.float32, "BLOCK_M": tile.block_m,
        "BLOCK_N": tile.block_n, "BLOCK_K": tile.block_k, "num_warps": tile.num_warps,
        "num_stages": tile.num_stages, "SCALE_BLOCK": spec.quant_block,
    }  # fmt: skip
    h = alloc(sorted_pairs.numel(), inter, dtype=x.dtype, device=x.device)
    out = alloc(num_pairs, hidden, dtype=torch.float32, device=x.device)
    if tile.swapped:
        _swapped_gate_up_down(x, weights, ex, spec, tile, h, out, sorted_pairs, block_expert, common)
        return out
    grid = (block_expert.numel(), triton.cdiv(inter, tile.block_n))
    _gate_up_kernel[grid](
        x, ex.w13, ex.s13, ex.b13, h, sorted_pairs, block_expert, num_pairs, hidden, inter,
        x.stride(0), ex.w13.stride(0), ex.w13.stride(1), ex.s13.stride(0), ex.s13.stride(1), ex.b13.stride(0),
        h.stride(0), spec.swiglu_alpha, spec.swiglu_limit,
        TOP_K=top_k, ACTIVATION=ACTIVATIONS[spec.activation], **common,
    )  # fmt: skip
    grid = (block_expert.numel(), triton.cdiv(hidden, tile.block_n))
    _down_kernel[grid](
        h, ex.w2, ex.s2, ex.b2, weights.contiguous(), out, sorted_pairs, block_expert, num_pairs, hidden, inter,
        h.stride(0), ex.w2.stride(0), ex.w2.stride(1), ex.s2.stride(0), ex.s2.stride(1), ex.b2.stride(0),
        out.stride(0), **common,
    )  # fmt: skip
    return out


def _swapped_gate_up_down(x, weights, ex, spec, tile, h, out, sorted_pairs, block_expert, common) -> None:
    """The two weights-first kernels (triton_moe_swapped.py) into h and out."""
    hidden, inter, num_pairs = spec.hidden_size, spec.intermediate_size, weights.numel()
    w13, w2, decode = ex.w13, ex.w2, swapped.DENSE
    if tile.fragments and common["WEIGHTS"] != DENSE:
        decode = swapped.FRAGMENTS
    elif common["WEIGHTS"] != DENSE:
        words = words_of(ex.w13, ex.w2, tile.words)
        (w13, w2), decode = (words, swapped.WORDS) if words else ((w13, w2), swapped.BYTES)
    flags = {
        "DECODE": decode, "HAS_BIAS": spec.has_bias, "IEEE": common["IEEE"],
        "BLOCK_M": tile.block_m, "BLOCK_N": tile.block_n, "BLOCK_K": tile.block_k,
        "num_warps": tile.num_warps, "num_stages": tile.num_stages,
    }  # fmt: skip
    if block_expert.numel() > MAX_GRID_Y:  # the blocks are the grid's second axis (CUDA allows 65,535)
        raise ValueError(
            f"{num_pairs} (token, expert) pairs make {block_expert.numel()} blocks of {tile.block_m}, past "
            f"the {MAX_GRID_Y} a weights-first launch takes: split the batch (--max-num-batched-tokens)"
        )
    grid = (triton.cdiv(inter, tile.block_n), block_expert.numel())  # column blocks fastest (L2)
    swapped.gate_up_kernel[grid](
        x, w13, ex.s13, ex.b13, h, sorted_pairs, block_expert, num_pairs, hidden, inter,
        x.stride(0), w13.stride(0), w13.stride(1), ex.s13.stride(0), ex.s13.stride(1), ex.b13.stride(0),
        h.stride(0), spec.swiglu_alpha, spec.swiglu_limit,
        TOP_K=spec.top_k, ACTIVATION=ACTIVATIONS[spec.activation], **flags,
    )  # fmt: skip
    grid = (triton.cdiv(hidden, tile.block_n), block_expert.numel())
    swapped.down_kernel[grid](
        h, w2, ex.s2, ex.b2, weights.contiguous(), out, sorted_pairs, block_expert, num_pairs, hidden, inter,
        h.stride(0), w2.stride(0), w2.stride(1), ex.s2.stride(0), ex.s2.stride(1), ex.b2.stride(0),
        out.stride(0), **flags,
    )  # fmt: skip


def forward(
    x: torch.Tensor,
    router_logits: torch.Tensor,
    w: dict[str, torch.Tensor],
    spec: MoESpec,
    tile: Tile | None = None,
) -> torch.Tensor:
    """Routing and the experts; at decode sizes (the GEMV) the kernels route from the logits themselves."""
    chosen = tile or pick_tile(x.shape[0] * spec.top_k, spec.num_experts, x.device)
    if chosen.block_m == 1 and spec.routing in IN_KERNEL and spec.quant != "fp8_block":
        experts = Experts.of(w, spec, placeholder=x)
        return gate_up_down(
            x, None, None, experts, spec, chosen, torch.empty, logits=router_logits.contiguous()
        )
    weights, ids = route(
        router_logits, spec.top_k, spec.routing, w.get("routing_bias"), spec.groups, spec.routed_scaling
    )
    return fused_moe(x, weights, ids, w, spec, tile=tile)
