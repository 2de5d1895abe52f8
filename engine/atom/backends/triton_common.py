"""Triton helpers shared by our kernels."""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from ..platform.device import gpu_arch


@functools.cache
def device_arch(device: torch.device) -> str:
    """gfx942 / gfx950 / sm90 ... of a GPU device, "cpu" for the interpreter: the key of the tile tables."""
    return gpu_arch(device) if device.type == "cuda" else "cpu"


@triton.jit
def dot(a, b, acc, IEEE: tl.constexpr):
    """acc + a @ b; IEEE keeps fp32 inputs exact (tensor cores would round them to tf32)."""
    if IEEE:
        return tl.dot(a, b, acc, input_precision="ieee")
    return tl.dot(a, b, acc)
