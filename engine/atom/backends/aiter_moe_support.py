"""What aiter's CK fused MoE is used for here. UNEXECUTED on these machines (no AMD GPU)."""

from .routing import SOFTMAX_TOPK, SOFTMAX_TOPK_RENORM
from .spec import Support

SUPPORT = Support(
    devices=frozenset({"rocm"}),
    archs=frozenset({"gfx942", "gfx950"}),
    quants=frozenset({"bf16", "fp8_tensor", "fp8_block"}),
    activations=frozenset({"silu"}),
    # aiter also has biased grouped top-k and shared-expert fusion; not wired up here, so not declared
    routings=frozenset({SOFTMAX_TOPK, SOFTMAX_TOPK_RENORM}),
    biases=False,
    requires=("aiter_ck",),
)
