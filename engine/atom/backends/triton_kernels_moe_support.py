"""What the triton_kernels matmul_ogs path supports: gpt-oss-style MoE only."""

from .routing import TOPK_SOFTMAX
from .spec import Support

SUPPORT = Support(
    devices=frozenset({"cuda", "rocm"}),
    archs=frozenset({"sm90", "sm100", "gfx942", "gfx950"}),
    quants=frozenset({"bf16", "mxfp4"}),
    activations=frozenset({"swiglu_oai"}),
    routings=frozenset({TOPK_SOFTMAX}),
    act_dtypes=frozenset({"bfloat16"}),  # its scaled-dot path has no fp32 activations (compile error)
    cuda_graphs=True,
    requires=("triton_kernels",),
)
