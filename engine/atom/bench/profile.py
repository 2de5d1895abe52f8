"""Where a step's device time goes: kernels (or CPU ops) by total time, from torch.profiler."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile


def kernel_table(fn: Callable[[], object], steps: int, device: str) -> list[dict]:
    """Run `fn` `steps` times under the profiler -> [{name, calls, us_per_step}], largest first.

    On a GPU the rows are device kernels (graph replays included); on the CPU they are the top-level ops.
    """
    gpu = device == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            fn()
        if gpu:
            torch.cuda.synchronize()
    rows = []
    for event in prof.key_averages():
        if gpu and event.device_type != DeviceType.CUDA:
            continue
        total = event.self_device_time_total if gpu else event.self_cpu_time_total
        if total > 0:
            rows.append({"name": event.key, "calls": event.count // steps, "us_per_step": total / steps})
    return sorted(rows, key=lambda r: -r["us_per_step"])


def print_kernel_table(title: str, rows: list[dict], top: int = 15) -> None:
    total = sum(r["us_per_step"] for r in rows)
    calls = sum(r["calls"] for r in rows)
    print(f"== {title}: {total:.1f} us per step in {calls} kernels (ops on the CPU)")
    for r in rows[:top]:
        print(f"{r['us_per_step']:10.1f} us {r['calls']:5d}x  {r['name'][:100]}")
