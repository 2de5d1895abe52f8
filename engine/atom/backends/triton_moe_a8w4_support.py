"""What the A8W4 variant of our Triton MoE supports (read without importing triton). Opt-in only: it
changes the math (activations quantized to MXFP8), so selection never picks it on its own."""

from .routing import SOFTMAX_TOPK, SOFTMAX_TOPK_RENORM, TOPK_SOFTMAX
from .spec import Support

SUPPORT = Support(
    devices=frozenset({"cpu", "cuda", "rocm"}),
    # gfx950 (and Blackwell) multiply e4m3 x e2m1 natively; sm90 and the CPU interpreter run the same code
    # through an upcast (that is how its numerics are checked without an AMD GPU); gfx942 has no scaled MFMA,
    # so there it would only lose precision for nothing
    archs=frozenset({"gfx950", "sm100", "sm90", "cpu"}),
    quants=frozenset({"mxfp4"}),
    activations=frozenset({"silu", "swiglu_oai"}),
    routings=frozenset({SOFTMAX_TOPK, SOFTMAX_TOPK_RENORM, TOPK_SOFTMAX}),
    cuda_graphs=True,
    requires=("triton",),
)
