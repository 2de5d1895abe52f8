"""y = x W^T (+ b) for a few rows of x: the dense projections of a batch-1 decode step as one GEMV launch.

At one row cuBLAS runs these as split-K GEMMs followed by a reduce kernel (two launches, and the GEMM at a
fraction of the copy rate: 657 us a step for the gpt-oss-20b shape's q/k/v and o projections, whose
weights read once take 300 us). Here each program owns BLOCK_N output columns for every row and walks K
once in long blocks (a whole row at once where registers allow): the weights are read once, in 16-byte
loads along K, with as many bytes in flight per SM as the tile holds. The same math as F.linear (fp32
accumulation, the bias added in fp32, one rounding to the output dtype); the order of the sum differs,
as between two GEMM kernels.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_common import device_arch

# From 2 rows cuBLAS is as fast or faster at the q/k/v projection on an H200 (`atom bench linear`:
# 13.4 against 10.4 us at 2 rows; 10.6 against 10.4 at 1), so the GEMV takes batch-1 decode only.
MAX_ROWS = 1
DTYPES = (torch.bfloat16, torch.float16)

# arch -> [(largest N, (BLOCK_N, BLOCK_K, warps))], first match. sm90 from `atom bench linear`
# (docs/performance.md): narrow blocks of whole rows, two rows a program for the routers' few outputs;
# the AMD archs take the same tiles, compiled by the AMD tier (amd_compile.py), never run.
TILES = {
    "default": [(512, (2, 4096, 4)), (None, (4, 2048, 4))],
    "cpu": [(None, (8, 64, 1))],
}


def tile_for(arch: str, n: int) -> tuple[int, int, int]:
    return next(tile for most, tile in TILES.get(arch, TILES["default"]) if most is None or n <= most)


@triton.jit
def _gemv_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr, M, N, K, stride_xm, stride_wn, stride_ym,
    HAS_BIAS: tl.constexpr, ROWS: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    EVEN_K: tl.constexpr,
):  # fmt: skip
    """Program n: output columns n * BLOCK_N ... for all M (<= ROWS) rows."""
    rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = tl.arange(0, ROWS)
    rk = tl.arange(0, BLOCK_K)
    # rows past M or N read the last one instead of being masked (never stored): no branch per load
    w_rows = w_ptr + tl.minimum(rn, N - 1).to(tl.int64)[:, None] * stride_wn
    x_rows = x_ptr + tl.minimum(rm, M - 1)[:, None] * stride_xm
    acc = tl.zeros((ROWS, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        k = k0 + rk
        if EVEN_K:
            w = tl.load(w_rows + k[None, :])
            x = tl.load(x_rows + k[None, :])
        else:
            w = tl.load(w_rows + k[None, :], mask=k[None, :] < K, other=0.0)
            x = tl.load(x_rows + k[None, :], mask=k[None, :] < K, other=0.0)
        acc += tl.sum(x.to(tl.float32)[:, None, :] * w.to(tl.float32)[None, :, :], axis=2)
    y = acc
    if HAS_BIAS:
        y += tl.load(b_ptr + rn, mask=rn < N, other=0.0).to(tl.float32)[None, :]
    ok = (rm < M)[:, None] & (rn < N)[None, :]
    tl.store(y_ptr + rm[:, None] * stride_ym + rn[None, :], y.to(y_ptr.dtype.element_ty), mask=ok)


def takes(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether this GEMV runs y = x W^T: a GPU, a few rows, 16-bit floats, W row-major."""
    return (
        x.is_cuda
        and x.dim() == 2
        and 0 < x.shape[0] <= MAX_ROWS
        and x.dtype in DTYPES
        and weight.dtype == x.dtype
        and weight.stride(-1) == 1
        and x.stride(-1) == 1
    )


def gemv(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, tile: tuple | None = None
) -> torch.Tensor:
    """x [M, K] (M <= MAX_ROWS), weight [N, K], bias [N] or None -> [M, N] in x's dtype."""
    (m, k), n = x.shape, weight.shape[0]
    block_n, block_k, warps = tile or tile_for(device_arch(x.device), n)
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    _gemv_kernel[(triton.cdiv(n, block_n),)](
        x, weight, bias if bias is not None else weight, y, m, n, k,
        x.stride(0), weight.stride(0), y.stride(0),
        HAS_BIAS=bias is not None, ROWS=triton.next_power_of_2(m), BLOCK_N=block_n, BLOCK_K=block_k,
        EVEN_K=k % block_k == 0, num_warps=warps,
    )  # fmt: skip
    return y
