"""What our fused Triton MoE supports (read without importing triton)."""

from .routing import SOFTMAX_TOPK, SOFTMAX_TOPK_RENORM, TOPK_SOFTMAX
from .spec import Support

SUPPORT = Support(
    devices=frozenset({"cpu", "cuda", "rocm"}),
    quants=frozenset({"bf16", "mxfp4"}),
    activations=frozenset({"silu", "swiglu_oai"}),
    routings=frozenset({SOFTMAX_TOPK, SOFTMAX_TOPK_RENORM, TOPK_SOFTMAX}),
    cuda_graphs=True,
    requires=("triton",),
)
