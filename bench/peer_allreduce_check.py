"""The one-shot all-reduce on real GPU memory with one GPU: two processes on the same device (gloo for
the handle exchange; the GPU time-slices the two kernels, so each waits for the other's flags across
slices: slow, but the protocol, the IPC mapping and the alternating halves are the real ones). Checks
chained calls, plain and fused with the residual add and RMSNorm, against the sums computed on the CPU.

Usage on a GPU machine: torchrun --nproc-per-node 2 bench/peer_allreduce_check.py
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from atom.backends import triton_allreduce
from atom.layers.linear import RMSNorm
from atom.parallel.peer_buffers import PeerBuffers

CALLS = 6


def main() -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("ATOM_CHECK_DEVICE", "0")))
    torch.cuda.set_device(device)
    peers = PeerBuffers(device)
    dist.barrier()  # every rank's flags are zero before anyone raises one
    gen = torch.Generator().manual_seed(rank)
    norm = RMSNorm(2880, 1e-5)
    norm.weight.copy_(torch.randn(2880, generator=torch.Generator().manual_seed(99)))
    failures = 0
    for dtype in (torch.float32, torch.bfloat16):
        for rows in (1, 5, 256):
            for call in range(CALLS):
                x = torch.randn(rows, 2880, generator=gen).to(dtype)
                residual = torch.randn(rows, 2880, generator=gen).to(dtype)
                want = x.float().clone()
                dist.all_reduce(want)  # gloo on the CPU: the reference sum
                if call % 2:
                    got = triton_allreduce.all_reduce(x.to(device), peers).cpu()
                    ok = torch.equal(got, want.to(dtype)) if world == 2 else torch.allclose(got.float(), want)
                else:
                    w = norm.weight.to(device, dtype)
                    got, total = triton_allreduce.all_reduce(
                        x.to(device), peers, residual.to(device), w, 1e-5
                    )
                    want_norm, want_total = norm.to(dtype).reference(want.to(dtype), residual)
                    ok = torch.equal(total.cpu(), want_total) and torch.allclose(
                        got.cpu().float(), want_norm.float(), rtol=1e-2, atol=1e-2
                    )
                failures += not ok
                if rank == 0:
                    print(f"{str(dtype):15} rows {rows:3d} call {call} {'fused' if call % 2 == 0 else 'plain'}: "
                          f"{'ok' if ok else 'WRONG'}", flush=True)  # fmt: skip
    peers.close()
    print(f"rank {rank}: {failures} wrong", flush=True)
    dist.destroy_process_group()
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
