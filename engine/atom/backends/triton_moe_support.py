"""What our fused Triton MoE supports (read without importing triton)."""

from .routing import SIGMOID_GROUPED, SOFTMAX_TOPK, SOFTMAX_TOPK_RENORM, TOPK_SOFTMAX
from .spec import Support

SUPPORT = Support(
    devices=frozenset({"cpu", "cuda", "rocm"}),
    quants=frozenset({"bf16", "mxfp4", "fp8_block"}),  # fp8_block: the GEMM tiles (not the per-pair GEMV)
    activations=frozenset({"silu", "swiglu_oai"}),
    # routing runs in torch before the kernels (graph-safe: no host syncs), so every kind works
    routings=frozenset({SOFTMAX_TOPK, SOFTMAX_TOPK_RENORM, TOPK_SOFTMAX, SIGMOID_GROUPED}),
    cuda_graphs=True,
    requires=("triton",),
)
