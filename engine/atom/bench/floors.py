"""The device's own floors, measured where a benchmark runs (not one card's constants): how fast it moves
bytes (a device-to-device copy: bytes read + bytes written per second) and how fast it multiplies (a
large bf16 matmul). A layer's bandwidth floor is the bytes it must read over the first; its compute
floor, its flops over the second."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Floors:
    device: str
    copy_bytes_per_s: float
    matmul_flops_per_s: float

    def as_dict(self) -> dict:
        return {
            "device": self.device,
            "copy_TB_s": round(self.copy_bytes_per_s / 1e12, 2),
            "bf16_matmul_TFLOP_s": round(self.matmul_flops_per_s / 1e12, 1),
        }


def _best_seconds(fn, iters: int = 20) -> float:
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return best


def _copy_seconds(device: str, nbytes: int) -> float:
    src = torch.empty(nbytes, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return _best_seconds(lambda: dst.copy_(src))


def _matmul_seconds(device: str, n: int) -> float:
    a = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    b = torch.randn(n, n, dtype=torch.bfloat16, device=device)
    return _best_seconds(lambda: a @ b)


@functools.cache
def measure(device: str = "cuda") -> Floors:
    nbytes, n = 1 << 30, 8192  # 1 GiB copies run far past every cache; 8192^3 fills the tensor cores
    copy_s, matmul_s = _copy_seconds(device, nbytes), _matmul_seconds(device, n)
    torch.cuda.empty_cache()
    return Floors(torch.cuda.get_device_name(device), 2 * nbytes / copy_s, 2 * n**3 / matmul_s)
