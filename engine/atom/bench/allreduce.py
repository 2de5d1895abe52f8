"""All-reduce latency per call on this host's GPUs, eager and inside a CUDA graph (the decode path).

Run one process per GPU:  torchrun --nproc-per-node 2 -m atom.bench.allreduce [--json-out FILE]
Prints a table on rank 0: rows x hidden bf16 values, microseconds per call."""

from __future__ import annotations

import argparse
import json
import os

import torch
import torch.distributed as dist

from ..config import ParallelConfig
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
    for n in ROWS:
        x = torch.randn(n, args.hidden, dtype=torch.bfloat16, device=device)

        def calls(x=x):
            for _ in range(CALLS):
                dist.all_reduce(x)

        eager = time_us(calls)
        say(n, "eager", eager)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            calls()
        say(n, "captured")
        graphed = time_us(graph.replay)
        say(n, "replayed", graphed)
        del graph  # captured collectives go before the group does

        def engine_calls(x=x):  # what the layers call: symmetric memory where it is on, else NCCL
            for _ in range(CALLS):
                comm.all_reduce(x)

        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            engine_calls()
        engine = time_us(graph.replay)
        del graph
        rows.append(
            {"rows": n, "hidden": args.hidden, "eager_us": round(eager, 1), "graph_us": round(graphed, 1),
             "engine_graph_us": round(engine, 1), "symmetric_memory": comm._symm is not None}
        )  # fmt: skip
    if rank == 0:
        print(f"all-reduce, {world} GPUs ({torch.cuda.get_device_name(device)}), bf16, us per call")
        for r in rows:
            print(
                f"  {r['rows']:5d} x {r['hidden']}: NCCL eager {r['eager_us']:7.1f}   NCCL in a CUDA graph "
                f"{r['graph_us']:7.1f}   engine's in a graph {r['engine_graph_us']:7.1f}"
                f" ({'symmetric memory' if r['symmetric_memory'] else 'NCCL'})"
            )
        if args.json_out:
            with open(args.json_out, "w") as f:
                json.dump(rows, f, indent=2)
    comm.close()


if __name__ == "__main__":
    main()
