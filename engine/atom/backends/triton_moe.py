"""Fused MoE in Triton for bf16/fp16/fp32 and MXFP4 experts.

Pipeline (no host syncs, so it is CUDA-graph safe):
  route (torch, shared semantics) -> sort (token, slot) pairs by expert into BLOCK_M-padded groups ->
  kernel 1: gather token rows, gate/up GEMM (MXFP4 decoded in registers), bias, activation -> h ->
  kernel 2: down GEMM, bias, times the routing weight, one row per pair -> sum over the k slots.
The final sum over slots replaces atomics: deterministic, and the same order of additions every run.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import triton
import triton.language as tl

from .routing import route
from .spec import MoESpec
from .triton_common import device_arch, dot
from .triton_moe_support import SUPPORT  # noqa: F401  (what this backend declares)

ACTIVATIONS = {"silu": 0, "swiglu_oai": 1}

# Tiles per arch: (BLOCK_N, BLOCK_K, num_warps, num_stages). LDS/shared memory bounds the stages:
# gfx942 has 64 KiB LDS, gfx950 160 KiB, sm90 228 KiB; the CPU interpreter ignores warps and stages.
# sm90 is what the H100 numbers in docs/performance.md ran with (not tuned); the gfx entries are sized to
# their LDS and have never run (no AMD GPU here).
TILES = {
    "gfx942": (64, 64, 4, 2),
    "gfx950": (64, 128, 4, 2),
    "sm90": (64, 128, 4, 4),
    "default": (64, 64, 4, 2),
}


@triton.jit
def _e2m1_times_scale(code, exponent):
    """4-bit E2M1 codes times 2^(exponent - 127), by bit placement rather than arithmetic.

    Sign and the 3 magnitude bits dropped into an fp16 (sign | exponent low bits | mantissa top bit) give
    the E2M1 value times 2^-14, subnormal 0.5 included; the E8M0 scale and the 2^14 fold into one exp2.
    """
    code = code.to(tl.uint16)
    half = (((code & 8) << 12) | ((code & 7) << 9)).to(tl.float16, bitcast=True)
    return half.to(tl.float32) * tl.exp2(exponent.to(tl.float32) - 113.0)


@triton.jit
def _load_rows(x_ptr, rows, row_ok, k0, K, stride, MXFP4: tl.constexpr, BLOCK_K: tl.constexpr):
    """Activations [BLOCK_M, BLOCK_K] from k0; for MXFP4 as (even k, odd k) halves matching the nibbles."""
    if MXFP4:
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
    return even, odd


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
    MXFP4: tl.constexpr,
    IEEE: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    """acc + x[:, k0:k0+BLOCK_K] @ W[rows, k0:k0+BLOCK_K]^T, W read along k (contiguous, vectorised).

    MXFP4: each byte holds k = 2j (low nibble) and 2j + 1 (high nibble); 16 bytes share one E8M0 scale.
    """
    if MXFP4:
        j = tl.arange(0, BLOCK_K // 2)
        mask = row_ok[:, None] & (k0 + 2 * j < K)[None, :]
        packed = tl.load(w_ptr + rows[:, None] * stride_row + (k0 // 2 + j)[None, :], mask=mask, other=0)
        exponent = tl.load(
            scale_ptr + rows[:, None] * stride_scale_row + (k0 // 32 + j // 16)[None, :], mask=mask, other=127
        )
        low = _e2m1_times_scale(packed & 0xF, exponent).to(x_even.dtype)
        high = _e2m1_times_scale(packed >> 4, exponent).to(x_even.dtype)
        acc = dot(x_even, tl.trans(low), acc, IEEE)
        acc = dot(x_odd, tl.trans(high), acc, IEEE)
    else:
        k = k0 + tl.arange(0, BLOCK_K)
        w = tl.load(
            w_ptr + rows[:, None] * stride_row + k[None, :],
            mask=row_ok[:, None] & (k < K)[None, :],
            other=0.0,
        )
        acc = dot(x_even, tl.trans(w), acc, IEEE)
    return acc


@triton.jit
def _block_pairs(sorted_pairs_ptr, num_pairs, BLOCK_M: tl.constexpr):
    """This program's BLOCK_M padded slots, the (token, k) pair in each, and which slots hold one."""
    slots = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    pair = tl.load(sorted_pairs_ptr + slots)
    return slots, pair, pair < num_pairs


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
    MXFP4: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    expert = tl.load(block_expert_ptr + tl.program_id(0))
    if expert < 0:  # a padding block past the last expert's pairs
        return
    slots, pair, pair_ok = _block_pairs(sorted_pairs_ptr, num_pairs, BLOCK_M)
    token = pair // TOP_K
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < inter
    if ACTIVATION == 1:
        gate_rows, up_rows = 2 * cols, 2 * cols + 1
    else:
        gate_rows, up_rows = cols, inter + cols
    w_base = w_ptr + expert.to(tl.int64) * stride_we
    s_base = scale_ptr + expert.to(tl.int64) * stride_se
    gate = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    up = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k0 in range(0, hidden, BLOCK_K):
        x_even, x_odd = _load_rows(x_ptr, token, pair_ok, k0, hidden, stride_xt, MXFP4, BLOCK_K)
        gate = _weight_dot(
            gate, x_even, x_odd, w_base, s_base, gate_rows, col_ok, k0, hidden, stride_wr, stride_sr,
            MXFP4, IEEE, BLOCK_K,
        )  # fmt: skip
        up = _weight_dot(
            up, x_even, x_odd, w_base, s_base, up_rows, col_ok, k0, hidden, stride_wr, stride_sr,
            MXFP4, IEEE, BLOCK_K,
        )  # fmt: skip
    if HAS_BIAS:
        b_base = bias_ptr + expert * stride_be
        gate += tl.load(b_base + gate_rows, mask=col_ok, other=0.0).to(tl.float32)[None, :]
        up += tl.load(b_base + up_rows, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    if ACTIVATION == 1:
        gate = tl.minimum(gate, limit)
        up = tl.minimum(tl.maximum(up, -limit), limit)
        h = (up + 1.0) * gate * tl.sigmoid(alpha * gate)
    else:
        h = gate * tl.sigmoid(gate) * up
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
    MXFP4: tl.constexpr,
    HAS_BIAS: tl.constexpr,
    IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_K: tl.constexpr,
):
    expert = tl.load(block_expert_ptr + tl.program_id(0))
    if expert < 0:  # a padding block past the last expert's pairs
        return
    slots, pair, pair_ok = _block_pairs(sorted_pairs_ptr, num_pairs, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    col_ok = cols < hidden
    w_base = w_ptr + expert.to(tl.int64) * stride_we
    s_base = scale_ptr + expert.to(tl.int64) * stride_se
    acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
    for k0 in range(0, inter, BLOCK_K):
        h_even, h_odd = _load_rows(h_ptr, slots, pair_ok, k0, inter, stride_ht, MXFP4, BLOCK_K)
        acc = _weight_dot(
            acc, h_even, h_odd, w_base, s_base, cols, col_ok, k0, inter, stride_wr, stride_sr,
            MXFP4, IEEE, BLOCK_K,
        )  # fmt: skip
    if HAS_BIAS:
        acc += tl.load(bias_ptr + expert * stride_be + cols, mask=col_ok, other=0.0).to(tl.float32)[None, :]
    acc *= tl.load(routing_weights_ptr + pair, mask=pair_ok, other=0.0)[:, None]
    tl.store(
        out_ptr + pair[:, None] * stride_ot + cols[None, :],
        acc.to(out_ptr.dtype.element_ty),
        mask=pair_ok[:, None] & col_ok[None, :],
    )


def group_by_expert(ids: torch.Tensor, num_experts: int, block_m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Expert ids [T, k] -> (pair index per padded slot, expert per BLOCK_M block; -1 = unused block).

    Every expert's pairs start on a block boundary, so a block multiplies by one expert's weights. Sizes are
    upper bounds known without reading `ids` on the host.
    """
    flat = ids.flatten()
    num_pairs = flat.numel()
    capacity = num_pairs + num_experts * (block_m - 1)
    capacity = triton.cdiv(capacity, block_m) * block_m
    # scatter_add, not bincount: bincount reads the max on the host, which breaks CUDA graph capture
    counts = torch.zeros(num_experts, dtype=torch.long, device=ids.device).scatter_add_(
        0, flat, torch.ones_like(flat)
    )
    padded = (counts + block_m - 1) // block_m * block_m
    group_end = padded.cumsum(0)
    group_start = group_end - padded
    order = torch.argsort(flat, stable=True)
    sorted_experts = flat[order]
    rank = torch.arange(num_pairs, device=ids.device) - (counts.cumsum(0) - counts)[sorted_experts]
    sorted_pairs = torch.full((capacity,), num_pairs, dtype=torch.int32, device=ids.device)
    sorted_pairs[group_start[sorted_experts] + rank] = order.to(torch.int32)
    block_starts = torch.arange(0, capacity, block_m, device=ids.device)
    block_expert = torch.searchsorted(group_end, block_starts, right=True)
    block_expert = torch.where(block_expert < num_experts, block_expert, -1).to(torch.int32)
    return sorted_pairs, block_expert


def _block_m(num_pairs: int, num_experts: int) -> int:
    """Rows per block: small for decode (few pairs per expert), larger for prefill."""
    per_expert = num_pairs / num_experts
    return 16 if per_expert <= 16 else 32 if per_expert <= 64 else 64


def _tiles(device: torch.device) -> tuple[int, int, int, int]:
    return TILES.get(device_arch(device), TILES["default"])


def fused_moe(
    x: torch.Tensor,
    weights: torch.Tensor,
    ids: torch.Tensor,
    w: dict[str, torch.Tensor],
    spec: MoESpec,
    alloc: Callable[..., torch.Tensor] = torch.empty,
) -> torch.Tensor:
    """x [T, H], routing weights/ids [T, k] -> [T, H]. `alloc` makes the workspaces (tests poison them)."""
    t, hidden = x.shape
    inter, top_k = spec.intermediate_size, spec.top_k
    mxfp4 = spec.quant == "mxfp4"
    num_pairs = t * top_k
    block_m = _block_m(num_pairs, spec.num_experts)
    block_n, block_k, warps, stages = _tiles(x.device)
    sorted_pairs, block_expert = group_by_expert(ids, spec.num_experts, block_m)
    w13 = w["w13_blocks"] if mxfp4 else w["w13"]
    w2 = w["w2_blocks"] if mxfp4 else w["w2"]
    s13 = w["w13_scales"] if mxfp4 else w13
    s2 = w["w2_scales"] if mxfp4 else w2
    b13 = w.get("w13_bias", x) if spec.has_bias else x
    b2 = w.get("w2_bias", x) if spec.has_bias else x
    ieee = x.dtype == torch.float32
    h = alloc(sorted_pairs.numel(), inter, dtype=x.dtype, device=x.device)
    grid = (block_expert.numel(), triton.cdiv(inter, block_n))
    _gate_up_kernel[grid](
        x, w13, s13, b13, h, sorted_pairs, block_expert, num_pairs, hidden, inter,
        x.stride(0), w13.stride(0), w13.stride(1), s13.stride(0), s13.stride(1), b13.stride(0), h.stride(0),
        spec.swiglu_alpha, spec.swiglu_limit,
        TOP_K=top_k, ACTIVATION=ACTIVATIONS[spec.activation], MXFP4=mxfp4, HAS_BIAS=spec.has_bias, IEEE=ieee,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=warps, num_stages=stages,
    )  # fmt: skip
    out = alloc(num_pairs, hidden, dtype=torch.float32, device=x.device)
    grid = (block_expert.numel(), triton.cdiv(hidden, block_n))
    _down_kernel[grid](
        h, w2, s2, b2, weights.contiguous(), out, sorted_pairs, block_expert, num_pairs, hidden, inter,
        h.stride(0), w2.stride(0), w2.stride(1), s2.stride(0), s2.stride(1), b2.stride(0), out.stride(0),
        MXFP4=mxfp4, HAS_BIAS=spec.has_bias, IEEE=ieee,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k, num_warps=warps, num_stages=stages,
    )  # fmt: skip
    return out.view(t, top_k, hidden).sum(dim=1).to(x.dtype)


def forward(
    x: torch.Tensor, router_logits: torch.Tensor, w: dict[str, torch.Tensor], spec: MoESpec
) -> torch.Tensor:
    weights, ids = route(router_logits, spec.top_k, spec.routing)
    return fused_moe(x, weights, ids, w, spec)
