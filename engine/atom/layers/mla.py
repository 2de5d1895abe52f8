"""Multi-head latent attention (DeepSeek-V2/V3): queries and keys/values through low-rank projections,
a decoupled rotary part, and a paged cache of the *latent* (kv_lora_rank + rope dims per token, one per
layer: no per-head K/V is ever stored).

The backend computes attention in the absorbed form: each head's key up-projection folded into its
query (q_nope W_UK), the value up-projection applied after the weighted sum of latents, so a token costs
kv_lora_rank + rope reads instead of per-head K and V."""

from __future__ import annotations

import torch
from torch import nn

from ..backends.spec import MLASpec
from ..config import ParallelConfig
from ..parallel.shard import Shard, attention_heads
from .context import get_metadata
from .linear import Linear, RMSNorm
from .rotary import RotaryEmbedding, yarn_mscale


class MLAttention(nn.Module):
    backend_kind = "mla"

    def __init__(self, config: dict, rms_eps: float, parallel: ParallelConfig) -> None:
        super().__init__()
        h, heads = config["hidden_size"], config["num_attention_heads"]
        self.kv_rank, self.q_rank = config["kv_lora_rank"], config.get("q_lora_rank")
        nope, rope, v = config["qk_nope_head_dim"], config["qk_rope_head_dim"], config["v_head_dim"]
        (first, local), _ = attention_heads(heads, heads, parallel)
        self.num_heads, self.nope, self.rope, self.v_dim = local, nope, rope, v
        qk = nope + rope
        by_heads = Shard(0, first * qk, local * qk)
        if self.q_rank:
            self.q_a_proj = Linear(h, self.q_rank, False)
            self.q_a_layernorm = RMSNorm(self.q_rank, rms_eps)
            self.q_b_proj = Linear(self.q_rank, heads * qk, False, by_heads, parallel)
        else:
            self.q_proj = Linear(h, heads * qk, False, by_heads, parallel)
        self.kv_a_proj_with_mqa = Linear(h, self.kv_rank + rope, False)
        self.kv_a_layernorm = RMSNorm(self.kv_rank, rms_eps)
        kv_rows = Shard(0, first * (nope + v), local * (nope + v))
        # read as W_UK / W_UV matrices (up_projections), so it stays in the model's dtype
        self.kv_b_proj = Linear(self.kv_rank, heads * (nope + v), False, kv_rows, parallel, quantizable=False)
        self.o_proj = Linear(heads * v, h, False, Shard(1, first * v, local * v), parallel)
        rope_params = config.get("rope_parameters") or config.get("rope_scaling") or {}
        scaling = rope_params if rope_params.get("rope_type", "default") != "default" else None
        theta = config.get("rope_theta") or rope_params.get("rope_theta") or 10000.0
        self.rotary = RotaryEmbedding(rope, config.get("max_position_embeddings", 4096), theta, scaling)
        self.interleaved = config.get("rope_interleave", True)  # rotary dims stored as (x0, x1) pairs
        self.scale = qk**-0.5 * yarn_mscale(scaling) ** 2
        self.spec = MLASpec(local, self.kv_rank, nope, rope, v)
        self.backend = None
        self.cache = torch.empty(0)

    # the paged latent cache ------------------------------------------------------------------------
    def cache_values_per_token(self) -> int:
        return self.kv_rank + self.rope

    def allocate_cache(self, blocks: int, block_size: int, dtype: torch.dtype, device: torch.device) -> None:
        self.cache = torch.zeros(blocks, block_size, self.kv_rank + self.rope, dtype=dtype, device=device)

    # ------------------------------------------------------------------------------------------------
    def up_projections(self) -> tuple[torch.Tensor, torch.Tensor]:
        """W_UK [H, nope, kv_rank] and W_UV [H, v, kv_rank], views of kv_b_proj's weight."""
        w = self.kv_b_proj.weight.view(self.num_heads, self.nope + self.v_dim, self.kv_rank)
        return w[:, : self.nope], w[:, self.nope :]

    def forward(self, positions: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[0]
        q = self.q_b_proj(self.q_a_layernorm(self.q_a_proj(x))) if self.q_rank else self.q_proj(x)
        q = q.view(t, self.num_heads, self.nope + self.rope)
        q_nope, q_rope = q.split([self.nope, self.rope], dim=-1)
        latent, k_rope = self.kv_a_proj_with_mqa(x).split([self.kv_rank, self.rope], dim=-1)
        latent = self.kv_a_layernorm(latent)
        if self.interleaved:  # to the rotate-half layout: the same rotation, dims reordered in q and k alike
            q_rope = torch.cat((q_rope[..., 0::2], q_rope[..., 1::2]), dim=-1)
            k_rope = torch.cat((k_rope[..., 0::2], k_rope[..., 1::2]), dim=-1)
        q_rope, k_rope = self.rotary(positions, q_rope.contiguous(), k_rope.unsqueeze(1).contiguous())
        o = self.backend.forward(
            q_nope, q_rope, latent, k_rope.squeeze(1), self.cache, get_metadata(), self, self.scale
        )
        return self.o_proj(o.reshape(t, -1))

    def defer_reduce(self) -> bool:
        return self.o_proj.defer_reduce()
