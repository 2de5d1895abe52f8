"""FP8 weights with block scales (DeepSeek-V3's checkpoints: e4m3 values, one fp32 scale per 128x128
block, stored as `<name>.weight` + `<name>.weight_scale_inv`).

The CPU path (and, until the FP8 GEMM lands, every path) dequantizes at load. AMD's MI300 (gfx942)
computes in e4m3 *fnuz* (exponent bias 8, no negative zero, max 240) rather than the OCP e4m3fn the
checkpoints hold (bias 7, max 448); gfx950 takes e4m3fn. The same bits read as fnuz are worth half as
much, so a kernel on gfx942 takes the bits unchanged with every scale doubled, after clearing the one
pattern that means -0 in fn and NaN in fnuz (0x80): `to_fnuz` does exactly that.
"""

from __future__ import annotations

import torch

FP8_DTYPES = (torch.float8_e4m3fn, torch.float8_e4m3fnuz)


def dequantize(weight: torch.Tensor, scale_inv: torch.Tensor, block: tuple[int, int]) -> torch.Tensor:
    """[out, in] fp8 values times their block's scale -> float32."""
    rows, cols = weight.shape
    scale = scale_inv.float().repeat_interleave(block[0], dim=0)[:rows].repeat_interleave(block[1], dim=1)
    return weight.float() * scale[:, :cols]


def quantize(weight: torch.Tensor, block: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """float [out, in] -> (e4m3fn values, fp32 scale_inv per block) as the checkpoints store them."""
    rows, cols = weight.shape
    br, bc = block
    padded = torch.zeros(-(-rows // br) * br, -(-cols // bc) * bc)
    padded[:rows, :cols] = weight.float()
    blocks = padded.view(padded.shape[0] // br, br, padded.shape[1] // bc, bc)
    scale = blocks.abs().amax(dim=(1, 3)).clamp(min=1e-12) / torch.finfo(torch.float8_e4m3fn).max
    values = (blocks / scale[:, None, :, None]).view_as(padded)[:rows, :cols]
    return values.to(torch.float8_e4m3fn), scale


def to_fnuz(weight: torch.Tensor, scale_inv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """e4m3fn values and scales -> the e4m3fnuz bits and scales that mean the same numbers (gfx942)."""
    return fnuz_bits(weight), scale_inv * 2.0


def fnuz_bits(weight: torch.Tensor) -> torch.Tensor:
    """e4m3fn values as e4m3fnuz bits (worth half as much: their scales must double)."""
    bits = weight.view(torch.int8).clone()
    bits[bits == -128] = 0  # fn's -0 is fnuz's NaN
    return bits.view(torch.float8_e4m3fnuz)


def stored_dtype(fnuz: bool) -> torch.dtype:
    """What a layer keeping FP8 weights holds them as (gfx942: fnuz)."""
    return torch.float8_e4m3fnuz if fnuz else torch.float8_e4m3fn


def values_as_stored(full: torch.Tensor, fnuz: bool) -> torch.Tensor:
    """Checkpoint e4m3fn values (or, from random dummy weights, any floats, put in e4m3's range) as a layer
    keeps them: fnuz bits on gfx942."""
    if full.dtype not in FP8_DTYPES:
        full = full.float().clamp(-448, 448).to(torch.float8_e4m3fn)
    return fnuz_bits(full) if fnuz else full


def scales_as_stored(full: torch.Tensor, fnuz: bool) -> torch.Tensor:
    """Block scales to go with values_as_stored: doubled for fnuz bits, which are worth half."""
    return full.float() * (2.0 if fnuz else 1.0)
