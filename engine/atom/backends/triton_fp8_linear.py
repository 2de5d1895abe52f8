"""y = x W^T (+ b) with W stored as FP8 e4m3 and one fp32 scale per 128x128 block (DeepSeek-V3's
checkpoints, `weight_scale_inv`), read as stored: half the bytes of bf16 weights, which is what a
decode step pays for.

The weights are upcast to the activations' dtype in registers (e4m3 values are exact in bf16) and each
K block's partial product is scaled by its block's scale in fp32: the same numbers as dequantizing the
weights first (the torch path), up to where the rounding falls. Activations are not quantized, so this
is the model's weights as the checkpoint holds them, not a W8A8 approximation. On gfx942 the weights
arrive as e4m3fnuz with doubled scales (backends/fp8.py, to_fnuz); Triton upcasts either kind.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from .triton_common import device_arch, dot
from .triton_fp8_linear_support import BLOCK, SUPPORT  # noqa: F401  (SUPPORT: the registry reads it)

KEEPS_FP8 = True  # the layers keep their FP8 weights (the torch path dequantizes them at load instead)

# arch -> (BLOCK_M, BLOCK_N, warps, stages). BLOCK_K is the scale block's width (128 in DeepSeek-V3) and
# BLOCK_N is cut to its height, so one scale covers a program's tile at each K step. The gfx tiles are
# the largest the AMD compile tier finds free of spills (wider ones spilled 20-170 scalar registers);
# they have never run.
TILES = {
    "default": (16, 64, 4, 3),
    "sm90": (16, 64, 4, 4),
    "gfx942": (16, 64, 8, 2),
    "gfx950": (16, 64, 4, 1),
    "cpu": (16, 64, 4, 1),
}
LARGE_M_TILES = {  # more than 64 rows (prefill)
    "default": (64, 128, 4, 3),
    "gfx942": (16, 64, 8, 2),
    "gfx950": (16, 64, 8, 2),
    "cpu": (32, 64, 4, 1),
}


@triton.jit
def _fp8_block_linear_kernel(
    x_ptr, w_ptr, s_ptr, b_ptr, y_ptr,
    M, N, K, K_BLOCKS_PER_SPLIT,
    stride_xm, stride_wn, stride_sn, stride_ym, stride_ys,
    HAS_BIAS: tl.constexpr, SCALE_N: tl.constexpr, EVEN_K: tl.constexpr, IEEE: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    """Program (m, n, split): rows m, columns n, over its split's K blocks. With several splits each
    writes fp32 partials at y + split * stride_ys (summed after); with one, the output itself."""
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    pid_k = tl.program_id(2)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    # rows past M or N read the last row instead of being masked (their results are never stored): on
    # AMD a masked load became a branch per element and spilled scalar registers
    x_rows = x_ptr + tl.minimum(rm, M - 1)[:, None] * stride_xm
    w_rows = w_ptr + tl.minimum(rn, N - 1)[:, None] * stride_wn
    s_row = s_ptr + (pid_n * BLOCK_N // SCALE_N) * stride_sn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    first = pid_k * K_BLOCKS_PER_SPLIT
    last = tl.minimum(first + K_BLOCKS_PER_SPLIT, tl.cdiv(K, BLOCK_K))
    for kb in range(first, last):
        k = kb * BLOCK_K + rk
        if EVEN_K:
            x = tl.load(x_rows + k[None, :])
            w = tl.load(w_rows + k[None, :])
        else:
            x = tl.load(x_rows + k[None, :], mask=k[None, :] < K, other=0.0)
            w = tl.load(w_rows + k[None, :], mask=k[None, :] < K, other=0.0)
        scale = tl.load(s_row + kb + 0 * rn)  # one value, as a vector: a scalar per step spilled on AMD
        part = dot(x, tl.trans(w.to(x.dtype)), tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32), IEEE)
        acc += part * scale[None, :]
    if HAS_BIAS:
        acc += tl.load(b_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)[None, :]
    y = y_ptr + pid_k * stride_ys + rm[:, None] * stride_ym + rn[None, :]
    tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=(rm[:, None] < M) & (rn[None, :] < N))


def tiles(m: int, arch: str) -> tuple[int, int, int, int]:
    table = LARGE_M_TILES if m > 64 else TILES
    return table.get(arch, table["default"])


@functools.cache
def _programs_wanted(device: torch.device) -> int:
    """Enough programs to fill the GPU a few times over (a decode GEMM has too few output tiles)."""
    if device.type != "cuda":
        return 1
    return 4 * torch.cuda.get_device_properties(device).multi_processor_count


def split_k(tiles_mn: int, k_blocks: int, device: torch.device) -> int:
    return max(1, min(k_blocks, _programs_wanted(device) // max(tiles_mn, 1)))


def fp8_block_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    scale_inv: torch.Tensor,
    bias: torch.Tensor | None = None,
    block: tuple[int, int] = BLOCK,
    out: torch.Tensor | None = None,
    splits: int | None = None,
) -> torch.Tensor:
    """x [..., K] (bf16/fp16/fp32), weight [N, K] fp8, scale_inv [ceil(N/bn), ceil(K/bk)] fp32 for
    block (bn, bk): powers of two of at least 16. out: [M, N] to write into (tests poison it).
    splits: K split over this many programs per tile (default: enough to fill the GPU), their fp32
    partials summed in one more pass; 1 writes the output directly."""
    shape = x.shape
    x = x.reshape(-1, shape[-1])
    if x.stride(-1) != 1:
        x = x.contiguous()
    m, k = x.shape
    n = weight.shape[0]
    y = out if out is not None else torch.empty((m, n), dtype=x.dtype, device=x.device)
    block_m, block_n, warps, stages = tiles(m, device_arch(x.device))
    block_n = min(block_n, block[0])
    tiles_m, tiles_n, k_blocks = triton.cdiv(m, block_m), triton.cdiv(n, block_n), triton.cdiv(k, block[1])
    splits = splits or split_k(tiles_m * tiles_n, k_blocks, x.device)
    per_split = triton.cdiv(k_blocks, splits)
    splits = triton.cdiv(k_blocks, per_split)  # none left empty
    target = y if splits == 1 else torch.empty((splits, m, n), dtype=torch.float32, device=x.device)
    with_bias = bias is not None and splits == 1
    _fp8_block_linear_kernel[(tiles_m, tiles_n, splits)](
        x, weight, scale_inv, bias if with_bias else target, target,
        m, n, k, per_split,
        x.stride(0), weight.stride(0), scale_inv.stride(0), target.stride(-2),
        target.stride(0) if splits > 1 else 0,
        HAS_BIAS=with_bias, SCALE_N=block[0], EVEN_K=k % block[1] == 0, IEEE=x.dtype == torch.float32,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block[1], num_warps=warps, num_stages=stages,
    )  # fmt: skip
    if splits > 1:
        total = target.sum(0)
        if bias is not None:
            total += bias.float()
        y.copy_(total)
    return y.reshape(*shape[:-1], n)
