"""A one-shot all-reduce over peer-mapped buffers, optionally fused with the residual add and RMSNorm that
follow a row-parallel layer: one launch where NCCL's all-reduce and the norm took two (a batch-1 decode
step of gpt-oss-120b at tensor parallelism 2 makes 74 all-reduces, each ~10 us in NCCL inside a graph).

Every rank's buffer is mapped into its peers (parallel/peer_buffers.py). Program r (one per row): copy
the row into this rank's buffer, tell each peer "row r is in" (a flag in the peer's memory, 0 -> 1 with
release semantics at system scope), wait for every peer's flag for row r in our own memory (1 -> 0,
acquire), then read row r from every rank's buffer and sum them in rank order, so every rank holds the
same bits. The flag a reader resets is the one its writer sets next call: a writer that is a call ahead
waits until the reader has taken the last one. Buffers alternate between two halves by call (an epoch on
the device, advanced by the last program of each launch, so it stays right inside CUDA graphs): a rank
writing half h again has passed the next call's flags, so every peer has finished reading half h.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .triton_pointwise import add_rms_norm_row


@triton.jit
def _raise_flag(flag_ptr):
    """0 -> 1 once the reader has taken the previous call's 1 (release: our row is visible first)."""
    while tl.atomic_cas(flag_ptr, 0, 1, sem="release", scope="sys") != 0:
        pass


@triton.jit
def _take_flag(flag_ptr):
    """Wait for a writer's 1 and reset it (acquire: its row is visible after)."""
    while tl.atomic_cas(flag_ptr, 1, 0, sem="acquire", scope="sys") != 1:
        pass


@triton.jit
def _allreduce_kernel(
    x_ptr, residual_ptr, w_ptr, out_ptr, sum_ptr, data_ptrs, flag_ptrs, epoch_ptr,
    rank, rows, dim, half_elems, stride_x, stride_r, eps,
    WORLD: tl.constexpr, NORM: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    """NORM: out = RMSNorm(sum + residual), sum_ptr = sum + residual. Else: out = the sum."""
    row = tl.program_id(0)
    cols = tl.arange(0, BLOCK)
    ok = cols < dim
    dtype = x_ptr.dtype.element_ty
    epoch = tl.load(epoch_ptr)
    at = (epoch % 2) * half_elems + row * dim + cols
    mine = tl.load(data_ptrs + rank).to(tl.pointer_type(dtype))
    tl.store(mine + at, tl.load(x_ptr + row * stride_x + cols, mask=ok), mask=ok)
    tl.debug_barrier()  # the whole row is in before any thread raises a flag
    own_flags = tl.load(flag_ptrs + rank).to(tl.pointer_type(tl.int32))
    for peer in tl.static_range(WORLD):
        if peer != rank:
            flags = tl.load(flag_ptrs + peer).to(tl.pointer_type(tl.int32))
            _raise_flag(flags + row * WORLD + rank)
    for peer in tl.static_range(WORLD):
        if peer != rank:
            _take_flag(own_flags + row * WORLD + peer)
    tl.debug_barrier()  # no thread reads a peer's row before its flag was taken
    total = tl.zeros([BLOCK], dtype=tl.float32)
    for peer in tl.static_range(WORLD):  # rank order: the same sum on every rank
        src = tl.load(data_ptrs + peer).to(tl.pointer_type(dtype))
        total += tl.load(src + at, mask=ok, other=0.0, cache_modifier=".cg").to(tl.float32)
    reduced = total.to(dtype)  # what an all-reduce hands back
    if NORM:  # the sum as an all-reduce hands it back, then as triton_pointwise's RMSNorm does
        add_rms_norm_row(
            reduced.to(tl.float32), residual_ptr + row * stride_r, w_ptr, out_ptr + row * dim,
            sum_ptr + row * dim, cols, ok, dim, eps, True,
        )  # fmt: skip
    else:
        tl.store(out_ptr + row * dim + cols, reduced, mask=ok)
    tl.debug_barrier()
    if tl.atomic_add(epoch_ptr + 1, 1) == rows - 1:  # the launch's last program moves to the other half
        tl.store(epoch_ptr + 1, 0)
        tl.store(epoch_ptr, epoch + 1)


def all_reduce(
    x: torch.Tensor,
    peers,
    residual: torch.Tensor | None = None,
    weight: torch.Tensor | None = None,
    eps: float = 0.0,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """x [rows, dim] -> the sum over the ranks (a new tensor); with residual and weight, (RMSNorm(sum +
    residual), sum + residual). peers: this rank's PeerBuffers, whose takes(x) must hold."""
    rows, dim = x.shape
    norm = residual is not None
    out = torch.empty((rows, dim), dtype=x.dtype, device=x.device)
    total = torch.empty_like(out) if norm else out
    block = triton.next_power_of_2(dim)
    _allreduce_kernel[(rows,)](
        x, residual if norm else x, weight if norm else x, out, total,
        peers.data_ptrs, peers.flag_ptrs, peers.epoch,
        peers.rank, rows, dim, peers.half_bytes // x.element_size(), x.stride(0),
        residual.stride(0) if norm else 0, eps,
        WORLD=peers.world, NORM=norm, BLOCK=block, num_warps=max(1, min(16, block // 256)),
    )  # fmt: skip
    return (out, total) if norm else out
