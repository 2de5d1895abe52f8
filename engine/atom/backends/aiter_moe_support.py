"""What aiter's CK fused MoE is used for here. UNEXECUTED on these machines (no AMD GPU)."""

from .routing import SIGMOID_GROUPED, SOFTMAX_TOPK, SOFTMAX_TOPK_RENORM
from .spec import Support

SUPPORT = Support(
    devices=frozenset({"rocm"}),
    archs=frozenset({"gfx942", "gfx950"}),
    quants=frozenset({"bf16", "fp8_tensor", "fp8_block"}),
    activations=frozenset({"silu"}),
    routings=frozenset({SOFTMAX_TOPK, SOFTMAX_TOPK_RENORM, SIGMOID_GROUPED}),
    shared_experts=True,
    biases=False,
    requires=("aiter_ck",),
)
