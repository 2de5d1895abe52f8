"""What our Triton paged attention supports (read without importing triton)."""

from .spec import Support

SUPPORT = Support(
    devices=frozenset({"cpu", "cuda", "rocm"}),  # cpu: only under TRITON_INTERPRET=1 (the triton probe says)
    head_dims=frozenset(),  # any: the kernel pads the head dimension to a power of two
    cuda_graphs=True,
    requires=("triton",),
)
