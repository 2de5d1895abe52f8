"""Decoder building blocks shared by the model families; every kernel call goes through a backend."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..backends.spec import AttentionSpec
from ..config import ParallelConfig
from ..layers.context import get_metadata
from ..layers.linear import Embedding, Linear, LMHead, RMSNorm, dense, sharded_parameter
from ..layers.mla import MLAttention
from ..layers.moe import FusedMoE, PerExpertNames
from ..layers.rotary import RotaryEmbedding
from ..parallel.shard import Shard, attention_heads


@dataclass
class ModelArgs:
    """The config.json fields the engine uses, normalised across transformers versions."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    rope_scaling: dict | None
    max_position_embeddings: int
    tie_word_embeddings: bool

    @classmethod
    def from_config(cls, c: dict) -> ModelArgs:
        rope = c.get("rope_parameters") or c.get("rope_scaling") or {}
        theta = c.get("rope_theta") or rope.get("rope_theta") or 10000.0
        scaling = rope if rope.get("rope_type", rope.get("type", "default")) != "default" else None
        return cls(
            vocab_size=c["vocab_size"],
            hidden_size=c["hidden_size"],
            intermediate_size=c["intermediate_size"],
            num_layers=c["num_hidden_layers"],
            num_heads=c["num_attention_heads"],
            num_kv_heads=c.get("num_key_value_heads") or c["num_attention_heads"],
            head_dim=c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"],
            rms_norm_eps=c.get("rms_norm_eps", 1e-6),
            rope_theta=float(theta),
            rope_scaling=scaling,
            max_position_embeddings=c.get("max_position_embeddings", 4096),
            tie_word_embeddings=c.get("tie_word_embeddings", False),
        )


class Attention(nn.Module):
    backend_kind = "attention"

    def __init__(
        self,
        args: ModelArgs,
        parallel: ParallelConfig,
        bias: bool = False,
        sliding_window: int | None = None,
        sinks: bool = False,
        qk_norm: bool = False,
    ) -> None:
        super().__init__()
        (q_first, q_heads), (kv_first, kv_heads) = attention_heads(
            args.num_heads, args.num_kv_heads, parallel
        )
        self.num_heads, self.num_kv_heads, self.head_dim = q_heads, kv_heads, args.head_dim
        h, d = args.hidden_size, args.head_dim
        by_q, by_kv = Shard(0, q_first * d, q_heads * d), Shard(0, kv_first * d, kv_heads * d)
        # fused into one [q; k; v] weight after loading (fuse_qkv), so they stay in the model's dtype
        self.q_proj = Linear(h, args.num_heads * d, bias, by_q, parallel, quantizable=False)
        self.k_proj = Linear(h, args.num_kv_heads * d, bias, by_kv, parallel, quantizable=False)
        self.v_proj = Linear(h, args.num_kv_heads * d, bias, by_kv, parallel, quantizable=False)
        self.o_proj = Linear(args.num_heads * d, h, bias, Shard(1, q_first * d, q_heads * d), parallel)
        self.sinks = None
        if sinks:  # one per query head: split with them
            own = Shard(0, q_first, q_heads)
            self.sinks = sharded_parameter(
                (q_heads,), (args.num_heads,), lambda p, f: p.data.copy_(own.take(f))
            )
        # Qwen3: RMSNorm over each head's q and k before the rotary (weights per head_dim, replicated)
        self.q_norm = RMSNorm(d, args.rms_norm_eps) if qk_norm else None
        self.k_norm = RMSNorm(d, args.rms_norm_eps) if qk_norm else None
        self.rotary = RotaryEmbedding(d, args.max_position_embeddings, args.rope_theta, args.rope_scaling)
        self.spec = AttentionSpec(self.num_heads, self.num_kv_heads, d, sliding_window, sinks)
        self.scale = d**-0.5
        self.backend = None  # chosen by the model runner (backends.registry.select)
        self.k_cache = self.v_cache = torch.empty(0)
        self.qkv: tuple[torch.Tensor, torch.Tensor | None] | None = None  # set by fuse_qkv, once loaded

    def cache_values_per_token(self) -> int:
        return 2 * self.num_kv_heads * self.head_dim

    def allocate_cache(self, blocks: int, block_size: int, dtype: torch.dtype, device: torch.device) -> None:
        shape = (blocks, block_size, self.num_kv_heads, self.head_dim)
        self.k_cache = torch.zeros(shape, dtype=dtype, device=device)
        self.v_cache = torch.zeros(shape, dtype=dtype, device=device)

    def fuse_qkv(self) -> None:
        """After loading: one [q; k; v] weight, so a step runs one GEMM instead of three (a decode step is
        launch-bound). The three projections become views into it: no extra memory, names unchanged."""
        parts = (self.q_proj, self.k_proj, self.v_proj)
        weight = torch.cat([p.weight.data for p in parts])
        bias = torch.cat([p.bias.data for p in parts]) if self.q_proj.bias is not None else None
        start = 0
        for p in parts:
            rows = p.weight.shape[0]
            p.weight.data = weight[start : start + rows]
            if bias is not None:
                p.bias.data = bias[start : start + rows]
            start += rows
        self.qkv = (weight, bias)

    def project_qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.qkv is None:
            raise RuntimeError("Attention.fuse_qkv() runs once the weights are in (load_model does it)")
        sizes = [p.weight.shape[0] for p in (self.q_proj, self.k_proj, self.v_proj)]
        return dense(x, *self.qkv).split(sizes, dim=-1)

    def forward(self, positions: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        t = x.shape[0]
        q, k, v = self.project_qkv(x)
        q = q.view(t, self.num_heads, self.head_dim)
        k = k.view(t, self.num_kv_heads, self.head_dim)
        v = v.view(t, self.num_kv_heads, self.head_dim)
        if self.q_norm is not None:
            q = self.q_norm(q.reshape(-1, self.head_dim)).view_as(q)
            k = self.k_norm(k.reshape(-1, self.head_dim)).view_as(k)
        meta = get_metadata()
        q, k, stored = self.rotary.rotate_and_store(
            positions, q, k, v, self.k_cache, self.v_cache, meta.slot_mapping
        )
        o = self.backend.forward(
            q, k, v, self.k_cache, self.v_cache, meta, self.spec, self.sinks, self.scale, kv_stored=stored
        )
        return self.o_proj(o.reshape(t, -1))

    def defer_reduce(self) -> bool:
        return self.o_proj.defer_reduce()


class DenseMLP(nn.Module):
    def __init__(
        self, args: ModelArgs, parallel: ParallelConfig, intermediate_size: int | None = None
    ) -> None:
        super().__init__()
        h, i, what = args.hidden_size, intermediate_size or args.intermediate_size, "MLP intermediate size"
        self.gate_proj = Linear.column(h, i, False, parallel, what=what)
        self.up_proj = Linear.column(h, i, False, parallel, what=what)
        self.down_proj = Linear.row(i, h, False, parallel, what=what)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))

    def defer_reduce(self) -> bool:
        return self.down_proj.defer_reduce()


class DecoderLayer(nn.Module):
    def __init__(self, args: ModelArgs, attn: Attention, mlp: nn.Module, mlp_name: str = "mlp") -> None:
        super().__init__()
        self.input_layernorm = RMSNorm(args.hidden_size, args.rms_norm_eps)
        self.self_attn = attn
        self.post_attention_layernorm = RMSNorm(args.hidden_size, args.rms_norm_eps)
        self.mlp_name = mlp_name
        self.add_module(mlp_name, mlp)

    def forward(
        self, positions: torch.Tensor, x: torch.Tensor, residual: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: the previous layer's MLP output (the embeddings, residual None, for the first layer).
        Returns this layer's MLP output and the residual stream before it; each add happens inside the
        next norm, one launch instead of two."""
        if residual is None:
            h, residual = self.input_layernorm(x), x
        else:
            h, residual = self.input_layernorm(x, residual)
        h, residual = self.post_attention_layernorm(self.self_attn(positions, h), residual)
        return getattr(self, self.mlp_name)(h), residual

    def reduce_in_norms(self, next_norm: RMSNorm) -> None:
        """Tensor parallelism: attention's and the MLP's partial outputs are summed over the ranks by the
        norm that follows each (this layer's post-attention norm, `next_norm`), in the norm's launch."""
        self.post_attention_layernorm.reduces_input = self.self_attn.defer_reduce()
        next_norm.reduces_input = getattr(self, self.mlp_name).defer_reduce()


class CausalLM(nn.Module):
    """embed -> decoder layers -> norm -> lm_head, named like HF checkpoints (model.layers.N...)."""

    def __init__(self, args: ModelArgs, layers: list[DecoderLayer], parallel: ParallelConfig) -> None:
        super().__init__()
        self.args, self.parallel = args, parallel
        self.model = nn.Module()
        self.model.embed_tokens = Embedding(args.vocab_size, args.hidden_size, parallel)
        self.model.layers = nn.ModuleList(layers)
        self.model.norm = RMSNorm(args.hidden_size, args.rms_norm_eps)
        self.lm_head = LMHead(args.vocab_size, args.hidden_size, parallel)
        if args.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        if parallel.tp_size > 1:
            norms_after = [layer.input_layernorm for layer in layers[1:]] + [self.model.norm]
            for layer, norm in zip(layers, norms_after, strict=True):
                layer.reduce_in_norms(norm)

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        x, residual = self.model.embed_tokens(input_ids), None
        for layer in self.model.layers:
            x, residual = layer(positions, x, residual)
        return self.model.norm(x, residual)[0] if residual is not None else self.model.norm(x)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden).float()

    def attention_layers(self) -> list[Attention | MLAttention]:
        """Every layer with a paged cache (its backend_kind says which backends apply)."""
        return [m for m in self.modules() if isinstance(m, Attention | MLAttention)]

    def moe_layers(self) -> list[FusedMoE]:
        return [m for m in self.modules() if isinstance(m, FusedMoE)]

    expert_names: PerExpertNames | None = None  # families whose checkpoints store experts apart

    def remap(self, name: str) -> list[tuple[str, object]]:
        """Checkpoint tensor name -> [(parameter name, copy function or None)]; identity for most tensors."""
        found = self.expert_names.remap(self, name) if self.expert_names else None
        return found or [(name, None)]

    def pieces(self, target: str) -> set[str]:
        """Checkpoint names that together fill `target` when remap splits it (all must be present)."""
        return self.expert_names.pieces(self, target) if self.expert_names else set()
