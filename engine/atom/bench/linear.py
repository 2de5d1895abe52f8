"""Dense projections at decode sizes (GPU): F.linear (cuBLAS) against our few-rows GEMV, every GEMV tile
timed under CUDA graphs, with the bytes floor at the device's measured copy rate. Its winners go into
triton_gemv.TILES (the table cites this command)."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from ..backends import triton_gemv
from .floors import measure
from .moe import rel_err, time_us

# (name, N, K) of the gpt-oss projections (hidden 2880, 64 query and 8 KV heads of 64), whole and at
# tensor-parallel size 2 (q/k/v split by heads, o by its input)
SHAPES = {
    "qkv": (5120, 2880),
    "o": (2880, 4096),
    "qkv/2": (2560, 2880),
    "o/2": (2880, 2048),
    "router-20b": (32, 2880),
    "router-120b": (128, 2880),
}
L2_ROTATION_BYTES = 256 << 20  # cycle through weight copies this large so no call reads from L2


def tiles() -> list[tuple[int, int, int]]:
    """Narrow blocks of long K runs: a step's weights are read once, so what counts is how many bytes
    each SM has in flight (whole rows at once at the largest BLOCK_K)."""
    return [(4, 512, 2)] + list(itertools.product([2, 4, 8], [1024, 2048, 4096], [4, 8]))


def _timed(op, weights: list[torch.Tensor]) -> float:
    """us per call, each call on the next weight copy (a decode step reads every weight once)."""
    return time_us(lambda: [op(w) for w in weights], graphs=True, iters=20) / len(weights)


def run_linear_bench(rows_list: list[int], shapes: list[str], sweep: bool = True) -> list[dict]:
    copy_rate = measure().copy_bytes_per_s  # the bytes a copy moves (read + written) per second
    results = []
    for name in shapes:
        n, k = SHAPES[name]
        copies = max(1, L2_ROTATION_BYTES // (n * k * 2))
        weights = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * k**-0.5 for _ in range(copies)]
        bias = torch.randn(n, device="cuda", dtype=torch.bfloat16)
        for rows in rows_list:
            row = {
                "shape": name,
                "N": n,
                "K": k,
                "M": rows,
                "floor_us": round(n * k * 2 / copy_rate * 1e6, 2),
            }
            row |= _measure(torch.randn(rows, k, device="cuda", dtype=torch.bfloat16), weights, bias, sweep)
            results.append(row)
            print(row, flush=True)
    return results


def _measure(x: torch.Tensor, weights: list[torch.Tensor], bias: torch.Tensor, sweep: bool) -> dict:
    """cuBLAS's time and the fastest correct GEMV tile's (the table's only, without a sweep)."""
    want = F.linear(x.float(), weights[0].float(), bias.float())
    best = None
    for tile in tiles() if sweep else [None]:
        err = rel_err(triton_gemv.gemv(x, weights[0], bias, tile).float(), want)
        if err > 1e-2:
            continue
        us = _timed(lambda w, t=tile: triton_gemv.gemv(x, w, bias, t), weights)
        if best is None or us < best[0]:
            best = (us, tile, err)
    return {
        "cublas_us": round(_timed(lambda w: F.linear(x, w, bias), weights), 2),
        "gemv_us": round(best[0], 2),
        "gemv_tile": best[1],
        "gemv_rel_err": f"{best[2]:.1e}",
    }


def print_linear_table(rows: list[dict]) -> None:
    print(f"{'shape':<12} {'N':>5} {'K':>5} {'M':>2} {'floor':>7} {'cuBLAS':>8} {'GEMV':>8}  tile")
    for r in rows:
        print(
            f"{r['shape']:<12} {r['N']:>5} {r['K']:>5} {r['M']:>2} {r['floor_us']:>7} {r['cublas_us']:>8} "
            f"{r['gemv_us']:>8}  {r['gemv_tile']}"
        )
