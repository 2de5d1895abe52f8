"""All-reduce latency per call on this host's GPUs: NCCL eager and inside a CUDA graph (the decode path),
the engine's one-shot kernel, and NCCL + the RMSNorm kernel against the two fused; the engine's results
against NCCL's, bit for bit.

Run one process per GPU:  torchrun --nproc-per-node 2 -m atom.bench.allreduce [--json-out FILE]
Prints a table on rank 0: rows x hidden bf16 values, microseconds per call."""

from __future__ import annotations

import argparse
import json
import os

import torch
import torch.distributed as dist

from ..backends import triton_pointwise
from ..config import ParallelConfig
from ..layers.linear import RMSNorm
from ..parallel import comm

ROWS = (1, 8, 64, 256, 2048)
CALLS = 20  # back to back per timing (as a decode step issues them, two per layer)


def time_us(fn, repeats: int = 10) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    fn()
    torch.cuda.synchronize()
    start.record()
    for _ in range(repeats):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) * 1000 / repeats / CALLS


def graphed_us(fn) -> float:
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    us = time_us(graph.replay)
    del graph  # captured collectives go before the group does
    return us


def comm_nccl(x: torch.Tensor) -> torch.Tensor:
    dist.all_reduce(x)
    return x


def agreement(x: torch.Tensor, residual: torch.Tensor, summing_norm: RMSNorm) -> dict:
    """The engine's path against NCCL (+ the norm kernel), over CALLS chained calls in one CUDA graph
    (each call's input the last one's output, halved): the same bits expected (two ranks' bf16 sums are
    rounded once either way)."""

    def chain(reduce, x):
        for _ in range(CALLS):
            x = reduce(x.clone()) * 0.5
        return x

    def chain_norm(fused, x):
        r = residual
        for _ in range(CALLS):
            if fused:
                x, r = summing_norm(x.clone(), r)
            else:
                x, r = triton_pointwise.rms_norm(comm_nccl(x.clone()), summing_norm.weight, 1e-5, r)
        return x, r

    results = []
    for fn in (lambda: chain(comm_nccl, x), lambda: chain(comm.all_reduce, x),
               lambda: chain_norm(False, x), lambda: chain_norm(True, x)):  # fmt: skip
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = fn()
        graph.replay()
        graph.replay()  # twice: the second starts where the first left the flags and halves
        torch.cuda.synchronize()
        results.append(out)
        del graph
    same = torch.equal(results[0], results[1])
    same_norm = all(torch.equal(a, b) for a, b in zip(results[2], results[3], strict=True))
    return {"same_bits": f"{'yes' if same else 'NO'} / {'yes' if same_norm else 'NO'}"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=2880)
    parser.add_argument("--json-out")
    args = parser.parse_args()
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    torch.cuda.set_device(device)
    # torchrun's own store (TORCHELASTIC_USE_AGENT_STORE: every rank joins it as a client)
    addr, port = os.environ["MASTER_ADDR"], int(os.environ["MASTER_PORT"])
    comm.init(ParallelConfig(tp_size=world, rank=rank, master_addr=addr, master_port=port), device)
    rows = []
    say = (
        (lambda *a: print(f"[rank {rank}]", *a, flush=True))
        if os.environ.get("ATOM_TRACE")
        else (lambda *a: None)
    )
    say("joined")
    summing_norm = RMSNorm(args.hidden, 1e-5).to(device, torch.bfloat16)  # as the layers use it
    summing_norm.weight.normal_()
    summing_norm.reduces_input = True
    weight = summing_norm.weight
    for n in ROWS:
        x = torch.randn(n, args.hidden, dtype=torch.bfloat16, device=device)
        residual = torch.randn(n, args.hidden, dtype=torch.bfloat16, device=device)

        def nccl(x=x):
            for _ in range(CALLS):
                dist.all_reduce(x)

        def ours(x=x):  # what the layers call: the one-shot kernel where it takes x, else NCCL
            for _ in range(CALLS):
                comm.all_reduce(x)

        def nccl_then_norm(x=x, residual=residual):
            for _ in range(CALLS):
                triton_pointwise.rms_norm(comm_nccl(x), weight, 1e-5, residual)

        def fused(x=x, residual=residual):
            for _ in range(CALLS):
                summing_norm(x, residual)

        row = {"rows": n, "hidden": args.hidden, "eager_us": round(time_us(nccl), 1)}
        for name, fn in (("graph_us", nccl), ("ours_graph_us", ours), ("nccl_norm_graph_us", nccl_then_norm),
                         ("fused_norm_graph_us", fused)):  # fmt: skip
            row[name] = round(graphed_us(fn), 1)
            say(n, name, row[name])
        row |= agreement(x, residual, summing_norm)
        rows.append(row)
    if rank == 0:
        print(
            f"all-reduce, {world} GPUs ({torch.cuda.get_device_name(device)}), bf16, us per call in a CUDA graph"
        )
        print(
            f"{'rows':>5} {'NCCL eager':>10} {'NCCL':>7} {'ours':>7} {'NCCL+norm':>9} {'fused':>7}  same bits"
        )
        for r in rows:
            print(
                f"{r['rows']:>5} {r['eager_us']:>10} {r['graph_us']:>7} {r['ours_graph_us']:>7} "
                f"{r['nccl_norm_graph_us']:>9} {r['fused_norm_graph_us']:>7}  {r['same_bits']}"
            )
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump(rows, f, indent=2)
    comm.close()


if __name__ == "__main__":
    main()
