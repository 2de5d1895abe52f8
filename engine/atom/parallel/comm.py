"""The collectives the layers call, over the one tensor-parallel group (every rank of the engine).

NCCL on NVIDIA GPUs and RCCL on ROCm (torch names both "nccl"), gloo on the CPU. At tp_size 1 nothing
is initialised and the layers never call here."""

from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist

from ..config import ParallelConfig

# ATOM_SYMM_MEM=1 (opt-in): small bf16 all-reduces (a decode step's, one after each row-parallel layer)
# through symmetric memory on GPUs: every rank's buffer is mapped into its peers (NVLink), one kernel
# reads them and sums (torch's two-shot all-reduce), capturable in CUDA graphs, no NCCL ring. Larger
# ones, fp32 and the CPU use NCCL / gloo. Opt-in because a second engine in the same process hung in the
# buffer's rendezvous on our H200s (torch 2.11), so only a process's first group gets it
# (docs/tensor-parallel.md has the numbers).
SYMM_MEM_BYTES = 8 << 20
_symm: tuple[torch.Tensor, str] | None = None
_symm_tried = False


def init(parallel: ParallelConfig, device: torch.device) -> None:
    """Join the group (blocks until every rank has joined or the timeout passes)."""
    global _symm, _symm_tried
    if dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")  # a timed-out collective ends the process
    os.environ.setdefault("NCCL_NVLS_ENABLE", "0")  # no NVLink multicast (see docs/tensor-parallel.md)
    os.environ.setdefault("TORCH_SYMM_MEM_DISABLE_MULTICAST", "1")  # nor in torch's symmetric memory
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
    if device.type == "cuda":  # every rank must take the same decision (workers are fresh processes)
        wanted = os.environ.get("ATOM_SYMM_MEM") == "1" and not _symm_tried
        everyone = torch.tensor([wanted], dtype=torch.int32, device=device)
        dist.all_reduce(everyone, op=dist.ReduceOp.MIN)
        if everyone.item():
            _symm_tried = True
            _symm = _symmetric_buffer(device)


def _symmetric_buffer(device: torch.device) -> tuple[torch.Tensor, str] | None:
    """The symmetric buffer, where every rank could make one (the ranks agree, else none uses it)."""
    buffer, name = None, dist.group.WORLD.group_name
    try:
        import torch.distributed._symmetric_memory as symm_mem

        buffer = symm_mem.empty(SYMM_MEM_BYTES // 2, dtype=torch.bfloat16, device=device)
        symm_mem.rendezvous(buffer, name)
    except Exception as e:  # an older torch, no peer access: NCCL carries every all-reduce
        print(f"atom: symmetric-memory all-reduce off: {e.__class__.__name__}: {e}", flush=True)
        buffer = None
    everyone = torch.tensor([buffer is not None], dtype=torch.int32, device=device)
    dist.all_reduce(everyone, op=dist.ReduceOp.MIN)
    return (buffer, name) if everyone.item() else None


def close() -> None:
    """Leave the group. NCCL: abort, which never waits on the other ranks (destroy_process_group hung
    at exit on our H200s once graphs had captured collectives and a peer had gone); gloo: destroy."""
    if not dist.is_initialized():
        return
    global _symm
    _symm = None
    abort = getattr(dist.distributed_c10d, "_abort_process_group", None)
    if dist.get_backend() == "nccl" and abort is not None:
        abort()
    else:
        dist.destroy_process_group()


def all_reduce(x: torch.Tensor) -> torch.Tensor:
    """Sum over the ranks, in place. Every rank takes the same path (it depends on shape and dtype only)."""
    if (
        _symm is not None
        and x.dtype == torch.bfloat16
        and x.numel() * 2 <= SYMM_MEM_BYTES
        and x.is_contiguous()
    ):
        buffer, name = _symm
        staged = buffer[: x.numel()]
        staged.copy_(x.view(-1))
        torch.ops.symm_mem.two_shot_all_reduce_(staged, "sum", name)
        x.copy_(staged.view_as(x))
        return x
    dist.all_reduce(x)
    return x


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
