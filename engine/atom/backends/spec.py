"""What a layer needs (spec) and what a backend supports (Support): matched exactly, never approximately."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class MoESpec:
    num_experts: int
    top_k: int
    hidden_size: int
    intermediate_size: int
    quant: str  # bf16 | fp8_tensor | fp8_block | mxfp4
    activation: str  # silu | swiglu_oai (interleaved gate/up, clamp limit, alpha)
    routing: str  # see routing.py
    has_bias: bool = False
    shared_experts: int = 0
    expert_parallel: bool = False
    swiglu_alpha: float = 1.702
    swiglu_limit: float = 7.0
    act_dtype: str = "bfloat16"  # the activations' torch dtype name (the model's compute dtype)
    groups: tuple[int, int] = (1, 1)  # sigmoid_grouped_topk: (expert groups, groups kept per token)
    routed_scaling: float = 1.0  # sigmoid_grouped_topk: the routing weights' factor
    quant_block: int = 128  # fp8_block: the square block of weights one scale covers


@dataclass(frozen=True)
class MLASpec:
    """Multi-head latent attention: per-rank query heads and the latent's shape."""

    num_heads: int
    kv_lora_rank: int
    qk_nope_head_dim: int
    qk_rope_head_dim: int
    v_head_dim: int


@dataclass(frozen=True)
class LinearSpec:
    """The model's quantized dense projections (all alike in a model): how the weights are stored."""

    quant: str  # fp8_block (e4m3 with one fp32 scale per 128x128 block)
    act_dtype: str = "bfloat16"


@dataclass(frozen=True)
class AttentionSpec:
    num_heads: int
    num_kv_heads: int
    head_dim: int
    sliding_window: int | None = None
    sinks: bool = False
    kv_layout: str = "NHD"  # cache [blocks, block_size, kv_heads, head_dim] for K and for V


@dataclass(frozen=True)
class Support:
    """Everything a backend can do. Empty `archs` means every arch of the listed devices."""

    devices: frozenset[str]
    archs: frozenset[str] = frozenset()
    quants: frozenset[str] = frozenset()
    activations: frozenset[str] = frozenset()
    routings: frozenset[str] = frozenset()
    shared_experts: bool = False
    expert_parallel: bool = False
    biases: bool = True
    sinks: bool = True
    sliding_window: bool = True
    head_dims: frozenset[int] = frozenset()
    kv_layouts: frozenset[str] = frozenset({"NHD"})
    requires: tuple[str, ...] = field(default=())  # platform probes that must say yes
    act_dtypes: frozenset[str] = frozenset()  # MoE activation dtypes; empty: any
    cuda_graphs: bool = False  # no host syncs: decode steps using it may be captured in CUDA graphs
