"""Sort (token, slot) pairs by expert into BLOCK_M-padded groups, without host syncs (CUDA-graph safe).

Every expert's pairs start on a block boundary, so each block of the MoE GEMMs multiplies by one expert's
weights. Decode-sized batches take one single-program Triton kernel (about twenty torch launches cost more
than the GEMMs at M=1); larger ones take the torch path, whose launches are small next to their GEMMs.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# The one-program kernel scans a [pairs, experts] one-hot tile in shared memory (2048 x 32 needed 256 KiB on
# the H100, past its 227 KiB); past this many elements (decode sizes fit) torch sorts instead.
SMALL_TILE_ELEMENTS = 1 << 13


def capacity_of(num_pairs: int, num_experts: int, block_m: int) -> int:
    """Padded slots for any routing: each expert's group rounds up to whole blocks."""
    return triton.cdiv(num_pairs + num_experts * (block_m - 1), block_m) * block_m


def group_by_expert(ids: torch.Tensor, num_experts: int, block_m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Expert ids [T, k] -> (pair index per padded slot, num_pairs where none; expert per block, -1 unused).

    Within an expert, pairs keep their order (token-major), so the result is the same on every path.
    """
    num_pairs = ids.numel()
    pairs_pad, experts_pad = triton.next_power_of_2(num_pairs), triton.next_power_of_2(num_experts)
    if pairs_pad * experts_pad <= SMALL_TILE_ELEMENTS:
        return _group_one_program(ids, num_experts, block_m, pairs_pad, experts_pad)
    return group_by_expert_torch(ids, num_experts, block_m)


def _group_one_program(ids, num_experts, block_m, pairs_pad, experts_pad):
    num_pairs = ids.numel()
    capacity = capacity_of(num_pairs, num_experts, block_m)
    num_blocks = capacity // block_m
    sorted_pairs = torch.empty(capacity, dtype=torch.int32, device=ids.device)
    block_expert = torch.empty(num_blocks, dtype=torch.int32, device=ids.device)
    _group_kernel[(1,)](
        ids.flatten(), sorted_pairs, block_expert, num_pairs, num_experts, capacity, num_blocks,
        BLOCK_M=block_m, PAIRS=pairs_pad, EXPERTS=experts_pad,
        BLOCKS=triton.next_power_of_2(num_blocks), FILL=1024,
    )  # fmt: skip
    return sorted_pairs, block_expert


@triton.jit
def _group_kernel(
    ids_ptr,
    sorted_pairs_ptr,
    block_expert_ptr,
    num_pairs,
    num_experts,
    capacity,
    num_blocks,
    BLOCK_M: tl.constexpr,
    PAIRS: tl.constexpr,
    EXPERTS: tl.constexpr,
    BLOCKS: tl.constexpr,
    FILL: tl.constexpr,
):
    pair = tl.arange(0, PAIRS)
    expert = tl.arange(0, EXPERTS)
    ids = tl.load(ids_ptr + pair, mask=pair < num_pairs, other=-1).to(tl.int32)
    onehot = (ids[:, None] == expert[None, :]).to(tl.int32)  # [PAIRS, EXPERTS]
    counts = tl.sum(onehot, axis=0)
    padded = (counts + BLOCK_M - 1) // BLOCK_M * BLOCK_M
    group_end = tl.cumsum(padded, axis=0)
    rank = tl.sum(tl.cumsum(onehot, axis=0) * onehot, axis=1) - 1  # earlier pairs of the same expert
    start = tl.sum(onehot * (group_end - padded)[None, :], axis=1)
    for s0 in range(0, capacity, FILL):  # every slot empty first ...
        slot = s0 + tl.arange(0, FILL)
        tl.store(sorted_pairs_ptr + slot, tl.full([FILL], 0, tl.int32) + num_pairs, mask=slot < capacity)
    tl.debug_barrier()  # ... then the pairs, in the same program: ordered by the barrier
    tl.store(sorted_pairs_ptr + start + rank, pair, mask=pair < num_pairs)
    block = tl.arange(0, BLOCKS)
    ended = (group_end[None, :] <= (block * BLOCK_M)[:, None]) & (expert < num_experts)[None, :]
    owner = tl.sum(ended.to(tl.int32), axis=1)  # experts whose groups end at or before the block's start
    tl.store(block_expert_ptr + block, tl.where(owner < num_experts, owner, -1), mask=block < num_blocks)


def group_by_expert_torch(
    ids: torch.Tensor, num_experts: int, block_m: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """group_by_expert for any size: sizes are upper bounds known without reading `ids` on the host."""
    flat = ids.flatten()
    num_pairs = flat.numel()
    capacity = capacity_of(num_pairs, num_experts, block_m)
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
