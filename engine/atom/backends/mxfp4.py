"""MXFP4 (OCP Microscaling): 32-value blocks of E2M1 nibbles sharing one E8M0 scale."""

from __future__ import annotations

import torch

FP4_VALUES = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0)


def dequantize(
    blocks: torch.Tensor, scales: torch.Tensor, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """blocks uint8 [..., n/32, 16], scales uint8 [..., n/32] -> [..., n]. Low nibble = even element."""
    lut = torch.tensor(FP4_VALUES, dtype=torch.float32, device=blocks.device)
    low, high = lut[(blocks & 0x0F).long()], lut[(blocks >> 4).long()]
    values = torch.stack((low, high), dim=-1).flatten(-2)  # [..., n/32, 32]
    values = torch.ldexp(values, scales.to(torch.int32)[..., None] - 127)
    return values.flatten(-2).to(dtype)


def quantize(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[..., n] float -> (blocks uint8 [..., n/32, 16], scales uint8 [..., n/32]); round to nearest E2M1."""
    *lead, n = weights.shape
    w = weights.float().reshape(*lead, n // 32, 32)
    amax = w.abs().amax(dim=-1).clamp(min=2.0**-126)
    exponent = (torch.floor(torch.log2(amax)) - 2).clamp(-127, 127)  # 6.0 = 1.5 * 2^2 is the largest E2M1
    scaled = w / torch.exp2(exponent)[..., None]
    grid = torch.tensor(FP4_VALUES[:8])
    codes = (scaled.abs()[..., None] - grid).abs().argmin(dim=-1)
    codes = codes + 8 * (scaled < 0).long() * (codes > 0).long()
    codes = codes.to(torch.uint8)
    blocks = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return blocks.contiguous(), (exponent + 127).to(torch.uint8)
