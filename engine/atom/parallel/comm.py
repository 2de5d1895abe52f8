"""The collectives the layers call, over the one tensor-parallel group (every rank of the engine).

NCCL on NVIDIA GPUs and RCCL on ROCm (torch names both "nccl"), gloo on the CPU. At tp_size 1 nothing
is initialised and the layers never call here."""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist

from ..config import ParallelConfig
from .peer_buffers import PeerBuffers

# Small all-reduces on one node's GPUs (a decode step's: after each row-parallel layer) go through our
# one-shot kernel over peer-mapped buffers (backends/triton_allreduce.py), fused with the norm that follows
# where the layers ask (all_reduce_add_rms_norm); larger ones, several nodes and the CPU use NCCL / gloo.
# On by default: across NVLink (2 x H200) its sums are NCCL's bit for bit and the engine's fp32 greedy
# tokens at N = 2 match N = 1 (docs/performance.md); ATOM_PEER_ALLREDUCE=0 leaves every sum to NCCL.
PEER_ALLREDUCE_DEFAULT = "1"
_peers: PeerBuffers | None = None


def init(parallel: ParallelConfig, device: torch.device) -> None:
    """Join the group (blocks until every rank has joined or the timeout passes)."""
    global _peers
    if dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")  # a timed-out collective ends the process
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")  # no NVLink multicast (see docs/tensor-parallel.md)
    # NCCL's user-buffer registration of captured collectives hung graph capture on our H200s (NCCL as
    # shipped with torch 2.11); without it capture and replay work (docs/tensor-parallel.md)
    os.environ.setdefault("NCCL_GRAPH_REGISTER", "0")
    dist.init_process_group(
        backend,
        init_method=f"tcp://{parallel.master_addr}:{parallel.master_port}",
        world_size=parallel.tp_size,
        rank=parallel.rank,
        timeout=datetime.timedelta(seconds=parallel.timeout_s),
        device_id=device if device.type == "cuda" else None,  # eager communicator: capturable at once
    )
    if device.type == "cuda" and parallel.nnodes == 1:
        _peers = _peer_buffers(device)


def _peer_buffers(device: torch.device) -> PeerBuffers | None:
    """This node's peer-mapped buffers, where every rank could map them (else no rank uses them)."""
    peers = None
    if os.environ.get("ATOM_PEER_ALLREDUCE", PEER_ALLREDUCE_DEFAULT) == "1":
        try:
            peers = PeerBuffers(device)
        except Exception as e:  # no peer access between these GPUs: NCCL carries every all-reduce
            print(f"atom: one-shot all-reduce off: {e.__class__.__name__}: {e}", flush=True)
    everyone = torch.tensor([peers is not None], dtype=torch.int32, device=device)
    dist.all_reduce(everyone, op=dist.ReduceOp.MIN)
    return peers if everyone.item() else None


def close() -> None:
    """Leave the group. NCCL: abort, which never waits on the other ranks (destroy_process_group hung
    at exit on our H200s once graphs had captured collectives and a peer had gone); gloo: destroy."""
    if not dist.is_initialized():
        return
    global _peers
    if _peers is not None:
        _peers.close()
    _peers = None
    abort = getattr(dist.distributed_c10d, "_abort_process_group", None)
    if dist.get_backend() == "nccl" and abort is not None:
        abort()
    else:
        dist.destroy_process_group()


def all_reduce(x: torch.Tensor) -> torch.Tensor:
    """Sum over the ranks: x itself (NCCL, in place) or a new tensor. Every rank takes the same path (it
    depends on shape and dtype only)."""
    rows = x.reshape(-1, x.shape[-1]) if x.dim() else x
    if _peers is not None and _peers.takes(rows):
        from ..backends import triton_allreduce

        return triton_allreduce.all_reduce(rows, _peers).view(x.shape)
    dist.all_reduce(x)
    return x


def all_reduce_add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(RMSNorm(sum over ranks of x + residual), that sum + residual) in one launch, or None where the
    one-shot path does not take x (the caller then reduces and norms apart: the same math)."""
    if _peers is None or not _peers.takes(x) or residual.stride(-1) != 1:
        return None
    from ..backends import triton_allreduce

    return triton_allreduce.all_reduce(x, _peers, residual, weight, eps)


def broadcast_from_rank_0(x: torch.Tensor) -> None:
    """Rank 0's x into every rank's x (in place; queued on the device, the host does not wait)."""
    dist.broadcast(x, src=0)


def gather_columns(x: torch.Tensor, tp_size: int) -> torch.Tensor:
    """[rows, cols] on each rank -> [rows, tp_size * cols] on every rank, rank-major along the columns."""
    rows, cols = x.shape
    out = torch.empty((tp_size * rows, cols), dtype=x.dtype, device=x.device)
    _all_gather(out, x.contiguous())
    return out.view(tp_size, rows, cols).permute(1, 0, 2).reshape(rows, tp_size * cols)


_all_gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor  # renamed in 2.13


def min_over_ranks(value: int, device: torch.device) -> int:
    t = torch.tensor([value], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())
