"""What the Triton FP8 block-scaled linear supports (read without importing triton)."""

from .spec import Support

BLOCK = (128, 128)  # the scale block the kernel's tiles are cut to (DeepSeek-V3's weight_block_size)

SUPPORT = Support(
    devices=frozenset({"cpu", "cuda", "rocm"}),  # cpu: Triton's interpreter (tests), never chosen there
    quants=frozenset({"fp8_block"}),
    act_dtypes=frozenset({"bfloat16", "float16", "float32"}),
    cuda_graphs=True,
    requires=("triton",),
)
