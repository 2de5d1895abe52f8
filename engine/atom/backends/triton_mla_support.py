"""What the Triton MLA backend supports (read without importing triton)."""

from .spec import Support

SUPPORT = Support(
    devices=frozenset({"cpu", "cuda", "rocm"}),  # cpu: only under TRITON_INTERPRET=1 (the triton probe says)
    cuda_graphs=True,
    requires=("triton",),
)
