"""RMSNorm (with the residual add) and rotary embedding as one Triton kernel each, for GPU tensors.

A decode step is launch-bound: in torch, RMSNorm is nine small kernels and rotary about ten per tensor,
roughly forty launches a layer. These compute the same fp32 math in one launch each; the layers keep the
torch code as the reference and for the CPU.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def add_rms_norm_row(
    x, residual_ptr, w_ptr, out_ptr, sum_ptr, cols, ok, dim, eps, HAS_RESIDUAL: tl.constexpr
):  # fmt: skip
    """One row: x (fp32, zero where not ok) [+ the residual row, rounded to its dtype as `x + residual` in
    torch would be, stored at sum_ptr] -> RMSNorm at out_ptr. The pointers point at the row's start;
    triton_allreduce's fused all-reduce ends with this too, so both give the same bits."""
    if HAS_RESIDUAL:
        r = tl.load(residual_ptr + cols, mask=ok, other=0.0).to(tl.float32)
        total = (x + r).to(sum_ptr.dtype.element_ty)
        tl.store(sum_ptr + cols, total, mask=ok)
        x = total.to(tl.float32)
    inv = 1.0 / tl.sqrt(tl.sum(x * x, axis=0) / dim + eps)
    w = tl.load(w_ptr + cols, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + cols, (w * (x * inv)).to(out_ptr.dtype.element_ty), mask=ok)


@triton.jit
def _rms_norm_kernel(
    x_ptr, residual_ptr, w_ptr, out_ptr, sum_ptr, dim, stride_x, stride_r, stride_o, eps,
    HAS_RESIDUAL: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    ok = cols < dim
    x = tl.load(x_ptr + row * stride_x + cols, mask=ok, other=0.0).to(tl.float32)
    add_rms_norm_row(
        x, residual_ptr + row * stride_r, w_ptr, out_ptr + row * stride_o, sum_ptr + row * dim,
        cols, ok, dim, eps, HAS_RESIDUAL,
    )  # fmt: skip


def _rows(x: torch.Tensor) -> torch.Tensor:
    rows = x.reshape(-1, x.shape[-1])
    return rows if rows.stride(-1) == 1 else rows.contiguous()


def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """x [..., dim] -> same shape and dtype: weight * x / sqrt(mean(x^2) + eps), in fp32. With a residual:
    (the norm of x + residual, x + residual), the sum in one launch with the norm."""
    assert residual is None or residual.dtype == x.dtype, "x and the residual stream share one dtype"
    rows = _rows(x)
    res = _rows(residual) if residual is not None else rows
    out = torch.empty(rows.shape, dtype=x.dtype, device=x.device)
    total = torch.empty(rows.shape, dtype=x.dtype, device=x.device) if residual is not None else out
    if rows.shape[0]:
        block = triton.next_power_of_2(rows.shape[1])
        _rms_norm_kernel[(rows.shape[0],)](
            rows, res, weight, out, total, rows.shape[1], rows.stride(0), res.stride(0), out.stride(0), eps,
            HAS_RESIDUAL=residual is not None, BLOCK=block, num_warps=max(1, min(16, block // 256)),
        )  # fmt: skip
    if residual is None:
        return out.view(x.shape)
    return out.view(x.shape), total.view(x.shape)


@triton.jit
def _rotary_kernel(
    q_ptr, k_ptr, q_out_ptr, k_out_ptr, cos_ptr, sin_ptr, pos_ptr,
    v_ptr, k_cache_ptr, v_cache_ptr, slot_ptr,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_cos, num_k_heads,
    stride_slot, stride_cache_head,
    NUM_Q_HEADS: tl.constexpr, HALF: tl.constexpr, HALF_PAD: tl.constexpr, STORE_KV: tl.constexpr,
):  # fmt: skip
    """One program per (token, head) over q's heads then k's: rotate-half with fp32 cos/sin tables. With
    STORE_KV, a K head's program also writes its rotated key and its value into the paged cache at the
    token's slot (what the attention backend would otherwise do with two scatter launches)."""
    t = tl.program_id(0).to(tl.int64)
    head = tl.program_id(1)
    i = tl.arange(0, HALF_PAD)
    ok = i < HALF
    pos = tl.load(pos_ptr + t)
    cos = tl.load(cos_ptr + pos * stride_cos + i, mask=ok, other=0.0)
    sin = tl.load(sin_ptr + pos * stride_cos + i, mask=ok, other=0.0)
    if head < NUM_Q_HEADS:  # outputs are contiguous [T, heads, 2 * HALF]
        src = q_ptr + t * stride_qt + head * stride_qh
        dst = q_out_ptr + (t * NUM_Q_HEADS + head) * 2 * HALF
    else:
        src = k_ptr + t * stride_kt + (head - NUM_Q_HEADS) * stride_kh
        dst = k_out_ptr + (t * num_k_heads + head - NUM_Q_HEADS) * 2 * HALF
    x1 = tl.load(src + i, mask=ok, other=0.0).to(tl.float32)
    x2 = tl.load(src + HALF + i, mask=ok, other=0.0).to(tl.float32)
    first = (x1 * cos - x2 * sin).to(dst.dtype.element_ty)
    second = (x2 * cos + x1 * sin).to(dst.dtype.element_ty)
    tl.store(dst + i, first, mask=ok)
    tl.store(dst + HALF + i, second, mask=ok)
    if STORE_KV and head >= NUM_Q_HEADS:
        kv_head = head - NUM_Q_HEADS
        at = tl.load(slot_ptr + t) * stride_slot + kv_head * stride_cache_head
        tl.store(k_cache_ptr + at + i, first, mask=ok)
        tl.store(k_cache_ptr + at + HALF + i, second, mask=ok)
        v_src = v_ptr + t * stride_vt + kv_head * stride_vh
        tl.store(v_cache_ptr + at + i, tl.load(v_src + i, mask=ok), mask=ok)
        tl.store(v_cache_ptr + at + HALF + i, tl.load(v_src + HALF + i, mask=ok), mask=ok)


def can_store_kv(k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor) -> bool:
    """Whether rotary can write this layer's cache: one dtype throughout (no cast on the way in), K and V
    caches [blocks, block_size, kv_heads, head_dim] of one layout with contiguous heads."""
    return (
        k_cache.dtype == v_cache.dtype == k.dtype == v.dtype
        and k_cache.dim() == 4
        and k_cache.shape == v_cache.shape
        and k_cache.is_contiguous()
        and v_cache.is_contiguous()
        and v.stride(-1) == 1
    )


def rotary(
    positions: torch.Tensor,
    q: torch.Tensor,
    k: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    kv_cache: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """q [T, Hq, D], k [T, Hk, D] (last dim contiguous), cos/sin [max positions, D/2] fp32 -> rotated
    q, k (contiguous, same dtypes). kv_cache (v, k_cache, v_cache, slot per token), where can_store_kv
    holds: the rotated keys and the values are written into the cache too, in the same launch."""
    assert q.stride(-1) == 1 and k.stride(-1) == 1 and cos.stride() == sin.stride()
    q_out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    k_out = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    t, num_q, dim = q.shape
    if kv_cache is None:
        v, k_cache, v_cache, slots, store = k, k, k, positions, False  # cache pointers never read
        stride_slot = stride_head = 0
    else:
        v, k_cache, v_cache, slots = kv_cache
        assert can_store_kv(k, v, k_cache, v_cache)
        stride_slot, stride_head, store = k_cache.stride(1), k_cache.stride(2), True
    if t:
        _rotary_kernel[(t, num_q + k.shape[1])](
            q, k, q_out, k_out, cos, sin, positions, v, k_cache, v_cache, slots,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1), cos.stride(0),
            k.shape[1], stride_slot, stride_head,
            NUM_Q_HEADS=num_q, HALF=dim // 2, HALF_PAD=triton.next_power_of_2(dim // 2), STORE_KV=store,
        )  # fmt: skip
    return q_out, k_out
