"""Check MoE tiles at a real gpt-oss shape against torch, with the workspaces left as allocated, zeroed and
poisoned with NaN, several times each: a tile that reads what it never wrote, or races, shows here where
the small test shapes (one K step) cannot. Usage (GPU): python bench/moe_tile_check.py [--shape S] [--m M]"""

from __future__ import annotations

import argparse

import torch

from atom.backends import torch_moe, triton_moe
from atom.backends.routing import route
from atom.backends.triton_moe_tiles import TILES, Tile
from atom.bench.moe import SHAPES, poisoned, random_mxfp4_experts, rel_err

WORKSPACES = {"empty": torch.empty, "zeros": torch.zeros, "nan": poisoned}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shape", default="gpt-oss-20b")
    parser.add_argument("--m", type=int, action="append")
    parser.add_argument(
        "--tile", action="append", help="a weights-first words tile: block_m,block_n,block_k,warps,stages"
    )
    args = parser.parse_args()
    spec = SHAPES[args.shape]
    gen = torch.Generator(device="cuda").manual_seed(0)
    w = random_mxfp4_experts(spec, "cuda", gen)
    tiles = [t for _, t in TILES["sm90"] if t.block_m > 1]
    tiles += [Tile(*map(int, text.split(",")), words=True, swapped=True) for text in args.tile or []]
    for m in args.m or [1024, 8192]:
        x = torch.randn(m, spec.hidden_size, device="cuda", generator=gen).to(torch.bfloat16)
        logits = torch.randn(m, spec.num_experts, device="cuda", generator=gen)
        weights, ids = route(logits, spec.top_k, spec.routing)
        ref = torch_moe.forward(x, logits, w, spec).float()
        for tile in tiles:
            errs = []
            for name, alloc in WORKSPACES.items():
                for _ in range(2):
                    got = triton_moe.fused_moe(x, weights, ids, w, spec, alloc=alloc, tile=tile)
                    errs.append(f"{name} {rel_err(got, ref):.1e}")
            shape = f"{tile.block_m}x{tile.block_n}x{tile.block_k} w{tile.num_warps} s{tile.num_stages}"
            print(
                f"{args.shape} M={m:<5} {shape:20} {'words' if tile.words else 'bytes'}  " + "  ".join(errs)
            )


if __name__ == "__main__":
    main()
