"""What a CUDA graph replay costs the host and the GPU per node (tiny kernels), back to back and from idle.

Usage on the GPU machine: python bench/graph_launch.py"""

from __future__ import annotations

import time

import torch


def graph_of(x: torch.Tensor, nodes: int) -> torch.cuda.CUDAGraph:
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        x.add_(1)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(nodes):
            x.add_(1)
    return graph


def main() -> None:
    x = torch.zeros(1024, device="cuda")
    for nodes in (25, 100, 250, 500):
        graph = graph_of(x, nodes)
        for _ in range(5):
            graph.replay()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(50):
            graph.replay()
        host_us = (time.perf_counter() - start) / 50 * 1e6
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        begin.record()
        for _ in range(50):
            graph.replay()
        end.record()
        end.synchronize()
        gpu_us = begin.elapsed_time(end) / 50 * 1e3
        from_idle = []
        for _ in range(21):
            torch.cuda.synchronize()
            start = time.perf_counter()
            graph.replay()
            torch.cuda.synchronize()
            from_idle.append((time.perf_counter() - start) * 1e6)
        print(
            f"nodes {nodes:4d}: replay() on the host {host_us:6.1f} us, on the GPU {gpu_us:7.1f} us, "
            f"replay + sync from idle {sorted(from_idle)[10]:7.1f} us"
        )


if __name__ == "__main__":
    main()
