"""Rotary position embeddings: default (Llama) and YaRN (gpt-oss), rotate-half layout."""

from __future__ import annotations

import math

import torch
from torch import nn


def default_inv_freq(head_dim: int, theta: float) -> tuple[torch.Tensor, float]:
    return 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim), 1.0


def yarn_inv_freq(head_dim: int, theta: float, scaling: dict) -> tuple[torch.Tensor, float]:
    """NTK-by-parts interpolation with a ramp between beta_fast and beta_slow rotations."""
    factor = scaling["factor"]
    original = scaling["original_max_position_embeddings"]
    beta_fast, beta_slow = scaling.get("beta_fast", 32), scaling.get("beta_slow", 1)
    attention_factor = scaling.get("attention_factor")
    if attention_factor is None:  # DeepSeek gives two mscales: their ratio (1 when equal)
        if scaling.get("mscale") and scaling.get("mscale_all_dim"):
            attention_factor = _mscale(factor, scaling["mscale"]) / _mscale(factor, scaling["mscale_all_dim"])
        else:
            attention_factor = _mscale(factor, 1.0)

    def correction_dim(rotations: float) -> float:
        return head_dim * math.log(original / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    pos_freqs = theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    extrapolation, interpolation = 1.0 / pos_freqs, 1.0 / (factor * pos_freqs)
    keep = 1 - ramp  # 1 where frequencies are high (kept), 0 where interpolated
    return interpolation * (1 - keep) + extrapolation * keep, attention_factor


def _mscale(factor: float, mscale: float) -> float:
    return 0.1 * mscale * math.log(factor) + 1.0 if factor > 1 else 1.0


def yarn_mscale(scaling: dict | None) -> float:
    """DeepSeek's YaRN softmax-scale correction (mscale_all_dim); 1 without YaRN."""
    if not scaling or scaling.get("rope_type", scaling.get("type")) != "yarn":
        return 1.0
    return (
        _mscale(scaling["factor"], scaling.get("mscale_all_dim") or 0.0)
        if scaling.get("mscale_all_dim")
        else 1.0
    )


class RotaryEmbedding(nn.Module):
    def __init__(self, head_dim: int, max_positions: int, theta: float, scaling: dict | None = None) -> None:
        super().__init__()
        kind = (scaling or {}).get("rope_type", (scaling or {}).get("type", "default"))
        if kind == "yarn":
            inv_freq, attn_factor = yarn_inv_freq(head_dim, theta, scaling)
        elif kind == "default":
            inv_freq, attn_factor = default_inv_freq(head_dim, theta)
        else:
            raise ValueError(f"rope_type {kind!r} is not supported (supported: default, yarn)")
        freqs = torch.outer(torch.arange(max_positions, dtype=torch.float32), inv_freq)
        self.register_buffer("cos", freqs.cos() * attn_factor, persistent=False)
        self.register_buffer("sin", freqs.sin() * attn_factor, persistent=False)

    def forward(
        self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if q.is_cuda:  # one fused kernel; imported here because CPU images ship without Triton
            from ..backends import triton_pointwise

            return triton_pointwise.rotary(positions, q, k, self.cos, self.sin)
        return self.reference(positions, q, k)

    def rotate_and_store(
        self,
        positions: torch.Tensor,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        slots: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, bool]:
        """forward, and on a GPU the rotated keys and the values written to the paged cache in the same
        launch (two scatter launches fewer a layer). -> (q, k, whether the cache was written)."""
        if q.is_cuda:
            from ..backends import triton_pointwise

            if triton_pointwise.can_store_kv(k, v, k_cache, v_cache):
                kv = (v, k_cache, v_cache, slots)
                return *triton_pointwise.rotary(positions, q, k, self.cos, self.sin, kv), True
        return *self.forward(positions, q, k), False

    def reference(
        self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cos = self.cos[positions].unsqueeze(1)
        sin = self.sin[positions].unsqueeze(1)
        return _rotate(q, cos, sin), _rotate(k, cos, sin)


def _rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.float().chunk(2, dim=-1)
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).to(x.dtype)
