"""Triton helpers shared by our kernels."""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl


@functools.cache
def device_arch(device: torch.device) -> str:
    """gfx942 / gfx950 / sm90 ... of a GPU device, "cpu" for the interpreter: the key of the tile tables."""
    if device.type != "cuda":
        return "cpu"
    if torch.version.hip:
        return torch.cuda.get_device_properties(device).gcnArchName.split(":")[0]
    major, minor = torch.cuda.get_device_capability(device)
    return f"sm{major}{minor}"


@triton.jit
def dot(a, b, acc, IEEE: tl.constexpr):
    """acc + a @ b; IEEE keeps fp32 inputs exact (tensor cores would round them to tf32)."""
    if IEEE:
        return tl.dot(a, b, acc, input_precision="ieee")
    return tl.dot(a, b, acc)
