"""Our Triton MoE's tiles: which kernel family and block shape each arch takes at each size, and where our
decode GEMV beats triton_kernels. Every number cited here comes from `atom bench moe-tiles` or `atom bench
moe` (docs/performance.md)."""

from __future__ import annotations

from typing import NamedTuple

import torch

from .spec import MoESpec
from .triton_common import device_arch
from .triton_moe_gemv import IN_KERNEL


class Tile(NamedTuple):
    block_m: int  # (token, expert) pairs per program, one expert's; 1 = the per-pair GEMV path, no grouping
    block_n: int
    block_k: int
    num_warps: int
    num_stages: int
    scaled_dot: bool = False  # MXFP4 with bf16/fp16 activations through tl.dot_scaled (else UPCAST)
    words: bool = False  # GEMV and swapped: MXFP4 read as uint32 words, decoded by shifts and masks
    swapped: bool = False  # GEMM weights-first, out^T = W x^T (triton_moe_swapped.py); MXFP4 and dense
    fragments: bool = False  # swapped MXFP4 from the load-time fragment layout (mx_layout.py); no table uses
    # it yet: up to 18 % faster on sm90, but its copies would double the experts' memory beside the GEMV's


# Per arch, (most pairs per expert, tile) from decode to prefill: the first entry whose bound holds is used.
# Up to one pair per expert, block_m 1 takes the per-pair GEMV (triton_moe_gemv.py; sm90, H200, M=1 on
# either gpt-oss layer: 39.4 us with MXFP4 read as words, 108.5 us decoding bytes, the GEMM tiles' best
# 178 us). Past it sm90 takes the weights-first GEMMs with MXFP4 read as words (triton_moe_swapped.py), the
# sweep's best on the 20b layer without routing (`atom bench moe-tiles`, H200, after the 16-byte word
# copies and bf16 decode): M=32 319 us, M=128 442 us, M=1024 1,115 us, M=8192 6,094 us (the row-major
# tiles' best were 802, 922, 4,606 and 30,582 us). Two weights-first tiles compute wrong results at real
# shapes on Triton 3.6 and must not enter the table: 128x128x128 with 8 warps (about 7e-2 off, every run)
# and 64x64x128 with 4 warps (inf now and then); the sweep checks each tile three times on NaN-poisoned
# workspaces, and bench/moe_tile_check.py rechecks a table at gpt-oss shapes. tl.dot_scaled is used on no sm90 tile: Triton 3.6 miscompiles it there for some tiles (wrong results at
# 16x64 with 4 warps and at every 64- and 128-row tile, measured by the same sweep). LDS/shared memory
# bounds the stages: gfx942 has 64 KiB, gfx950 160 KiB, sm90 228 KiB. The gfx entries have never run (no
# AMD GPU here) and keep the row-major UPCAST path; they are the largest tiles that compile for their arch
# without spilling registers in both kernels, MXFP4 and bf16 experts, compiled as the JIT would launch them
# (amd_compile.py checks it in CI: the earlier 64-wide, 4-warp tiles spilled 15-336 registers; with the
# JIT's alignment specialization gfx942's 32- and 64-row MXFP4 gate/up kernels spilled a register at
# 8 warps, not at 4). The interpreter ignores warps and stages.
TILES = {
    "gfx942": (
        (1, Tile(1, 32, 128, 8, 2)),
        (16, Tile(16, 32, 64, 8, 2)),
        (64, Tile(32, 32, 64, 4, 2)),
        (None, Tile(64, 32, 64, 4, 2)),
    ),
    "gfx950": (
        (1, Tile(1, 32, 128, 8, 2)),
        (16, Tile(16, 32, 64, 8, 2)),
        (64, Tile(32, 32, 64, 8, 2)),
        (None, Tile(64, 32, 64, 8, 2)),
    ),
    "sm90": (
        (1, Tile(1, 8, 1024, 4, 2, words=True)),
        (4, Tile(16, 64, 128, 4, 3, words=True, swapped=True)),
        (16, Tile(32, 64, 128, 4, 3, words=True, swapped=True)),
        (None, Tile(64, 128, 64, 8, 3, words=True, swapped=True)),
    ),
    "default": (
        (1, Tile(1, 32, 128, 4, 2)),
        (16, Tile(16, 64, 64, 4, 2)),
        (64, Tile(32, 64, 64, 4, 2)),
        (None, Tile(64, 64, 64, 4, 2)),
    ),
}


# Per arch, the row-major tiles for what the weights-first kernels do not take (FP8 experts, the A8W4
# math) and for dense experts (the weights-first tiles were measured on MXFP4 only): the sweep's best
# before those kernels existed, each checked correct on sm90 (the tl.dot_scaled
# ones at 16 rows: 16x64 with 4 warps gives wrong results there). Arches not listed use TILES.
ROW_MAJOR_TILES = {
    "sm90": (
        (4, Tile(16, 32, 256, 4, 3, scaled_dot=True)),
        (16, Tile(16, 32, 128, 2, 4, scaled_dot=True)),
        (64, Tile(32, 64, 128, 4, 4)),
        (256, Tile(64, 128, 128, 4, 2)),
        (None, Tile(128, 128, 64, 8, 2)),
    ),
}


def tiles_for(arch: str, swapped_ok: bool = True) -> tuple[tuple[int | None, Tile], ...]:
    """The arch's (bound, tile) table; without swapped_ok, one with no weights-first tile."""
    table = TILES.get(arch, TILES["default"])
    if swapped_ok or not any(tile.swapped for _, tile in table):
        return table
    return tuple(entry for entry in table if entry[1].block_m == 1) + ROW_MAJOR_TILES[arch]


# Per arch, the most tokens for which our GEMV (routing inside its kernels) beats triton_kernels' matmul_ogs
# on the whole MXFP4 layer, from `bash bench/moe_decode.sh` (docs/performance.md, H200: 40.5 vs 85.7 us at
# M=1 and 73.5 vs 103.0 at M=2 on the 20b layer, 129.6 vs 104.6 at M=4): the triton_kernels backend hands
# these batches to us. Arches not listed have no measurement: nothing is handed over.
GEMV_AHEAD_OF_TRITON_KERNELS = {"sm90": 2}


def gemv_is_faster(tokens: int, spec: MoESpec, device: torch.device) -> bool:
    """Whether this batch runs faster through our GEMV than through triton_kernels (same math: exact
    products of the MXFP4 values, fp32 sums)."""
    ahead = GEMV_AHEAD_OF_TRITON_KERNELS.get(device_arch(device), 0)
    return spec.quant == "mxfp4" and spec.routing in IN_KERNEL and tokens <= ahead


# FP8 experts on gfx942: the 64-row tile spills (the scales' registers on top of the bf16 tile's), so
# they stop at the 32-row one (the AMD compile tier checks what is left)
FP8_MAX_BLOCK_M = {"gfx942": 32}


def pick_tile(
    num_pairs: int,
    num_experts: int,
    device: torch.device,
    gemm_only: bool = False,
    max_block_m: int = 1 << 30,
    swapped_ok: bool = True,
) -> Tile:
    """The arch's tile for this many pairs per expert: small blocks for decode, larger for prefill.
    gemm_only: never the per-pair GEMV (A8W4 quantizes activations in the GEMM tiles only);
    swapped_ok False: row-major tiles only (FP8 and dense experts, A8W4)."""
    per_expert = num_pairs / num_experts
    usable = [
        (bound, tile) for bound, tile in tiles_for(device_arch(device), swapped_ok)
        if not (gemm_only and tile.block_m == 1) and tile.block_m <= max_block_m
    ]  # fmt: skip
    # past the last usable bound (a capped table): its largest tile
    return next((tile for bound, tile in usable if bound is None or per_expert <= bound), usable[-1][1])
