"""Tile sweep for our Triton MoE: every candidate tile at a shape and M, timed under CUDA graphs, checked
against torch. Its winners go into triton_moe_tiles.TILES (the table cites this command)."""

from __future__ import annotations

import itertools
import time

import torch

from ..backends import mx_layout, torch_moe, triton_moe
from ..backends.routing import route
from ..backends.triton_moe_tiles import Tile
from .moe import SHAPES, poisoned, random_mxfp4_experts, rel_err, time_us


def swapped_tiles(pairs_per_expert: float) -> list[Tile]:
    """Weights-first tiles: the token block is the MMA's narrow side (16 and up), the weight rows its
    wide one (64 rows a warpgroup); MXFP4 read as words first (CUDA only: subnormals kept), then from the
    fragment layout, then as bytes."""
    block_ms = [m for m in (128, 64, 32, 16) if m <= max(16, 2 * pairs_per_expert)][:2]  # largest first
    shapes = [(m, 64, 128, 4, 3) for m in block_ms] + [
        (m, 128, 128, 8, 3) for m in block_ms
    ]  # the best so far
    shapes += [(m, n, k, 4, s) for m in block_ms for n in (64, 128) for k in (128, 256) for s in (3, 4)]
    shapes += [(m, 128, k, 8, s) for m in block_ms for k in (64, 128) for s in (3, 4)]
    shapes += [(m, 256, 64, 8, 3) for m in block_ms]
    shapes = list(dict.fromkeys(shapes))
    if not torch.version.cuda:  # words and fragments decode through fp32 subnormals: CUDA keeps them
        return [Tile(*t, swapped=True) for t in shapes]
    fragments = [Tile(*t, words=True, swapped=True, fragments=True) for t in shapes]
    # the checkpoint layout first: the fragment layout is opt-in (a second copy of every expert)
    return (
        [Tile(*t, words=True, swapped=True) for t in shapes]
        + fragments
        + [Tile(*t, swapped=True) for t in shapes]
    )


def candidate_tiles(pairs_per_expert: float) -> list[Tile]:
    """Decode-sized blocks when experts see few pairs, wide ones for prefill (shared memory permitting);
    the weights-first family first (the row-major winners are in the tables already). At one pair per
    expert, the GEMV only: a block of 16 or more pairs would hold one."""
    if pairs_per_expert <= 1:
        return row_major_tiles(pairs_per_expert)
    return swapped_tiles(pairs_per_expert) + row_major_tiles(pairs_per_expert)


def row_major_tiles(pairs_per_expert: float) -> list[Tile]:
    if pairs_per_expert <= 4:  # the per-pair GEMV (block_m 1) and the 16-row GEMM
        # whole rows at once (BLOCK_K past K): the bytes in flight per SM, as for the dense GEMV
        words = itertools.product([1], [2, 4, 8, 16], [1024, 2048, 4096], [4, 8], [2])
        gemv = [Tile(*t, words=True) for t in words] if torch.version.cuda else []  # words: subnormals kept
        gemv += [Tile(*t) for t in itertools.product([1], [16, 32], [128, 256], [4, 8], [2])]
        gemm = itertools.product([16], [16, 32], [128, 256], [2, 4], [3])
        return gemv + [Tile(*t, scaled_dot=True) for t in gemm]
    if pairs_per_expert <= 16:
        space = ([16], [16, 32, 64], [128, 256], [2, 4], [2, 3, 4])
    elif pairs_per_expert <= 64:
        space = ([32], [32, 64, 128], [128, 256], [4], [2, 3, 4])
    else:
        space = ([64, 128], [64, 128], [64, 128], [4, 8], [2, 3])
    return [Tile(*t) for t in itertools.product(*space)]


def sweep(shape: str, m: int, budget_s: float, seed: int = 0) -> list[dict]:
    """Rows sorted fastest first; a tile that fails to compile or is wrong is reported, not timed."""
    spec = SHAPES[shape]
    gen = torch.Generator(device="cuda").manual_seed(seed)
    w = random_mxfp4_experts(spec, "cuda", gen)
    w |= mx_layout.prepare(w, interleaved=spec.activation == "swiglu_oai")  # for the fragments tiles
    x = torch.randn(m, spec.hidden_size, device="cuda", generator=gen).to(torch.bfloat16)
    logits = torch.randn(m, spec.num_experts, device="cuda", generator=gen)
    weights, ids = route(logits, spec.top_k, spec.routing)
    ref = torch_moe.forward(x, logits, w, spec).float()
    deadline = time.monotonic() + budget_s
    rows = []
    for tile in candidate_tiles(m * spec.top_k / spec.num_experts):
        if time.monotonic() > deadline:
            rows.append({"shape": shape, "M": m, "tile": tile._asdict(), "error": "sweep budget spent"})
            break

        def call(tile: Tile = tile, alloc=torch.empty) -> torch.Tensor:
            return triton_moe.fused_moe(x, weights, ids, w, spec, alloc=alloc, tile=tile)

        try:
            # the worst of three runs on NaN-poisoned workspaces: some tiles compile to a loop that is wrong
            # only some of the time (docs/performance.md), and a tile must not read what it never wrote
            errs = [rel_err(call(alloc=poisoned), ref) for _ in range(3)]
            err = max(errs) if all(e == e for e in errs) else float("nan")  # NaN compares false
            us = time_us(call, graphs=True, iters=30) if err < 2e-2 else None
        except Exception as exc:  # noqa: BLE001 (a tile past the shared-memory limit: report, go on)
            rows.append(
                {"shape": shape, "M": m, "tile": tile._asdict(), "error": str(exc).splitlines()[0][:120]}
            )
            continue
        rows.append({"shape": shape, "M": m, "tile": tile._asdict(), "us": us, "rel_err_vs_torch": err})
    return sorted(rows, key=lambda r: r.get("us") or float("inf"))


def print_sweep(rows: list[dict], top: int = 5) -> None:
    if not rows:
        return
    for r in rows[:top]:
        t = r["tile"]
        tile = f"M{t['block_m']} N{t['block_n']} K{t['block_k']} w{t['num_warps']} s{t['num_stages']}"
        tile += "".join(
            f" {flag}" for flag in ("scaled_dot", "words", "swapped", "fragments") if t.get(flag)
        )  # else rows look alike
        result = (
            f"{r['us']:9.1f} us  err {r['rel_err_vs_torch']:.1e}" if r.get("us") else r.get("error", "wrong")
        )
        print(f"{r['shape']:14} M={r['M']:<6} {tile:37} {result}")
    failed = sum(1 for r in rows if not r.get("us"))
    print(f"{rows[0]['shape']:14} M={rows[0]['M']:<6} {len(rows)} tiles tried, {failed} failed or wrong")
