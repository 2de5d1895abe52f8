"""The reference for quantized dense projections: FP8 block-quantized weights are dequantized when the
checkpoint is read (models/checkpoint.py) and the layers are plain linears in the model's dtype. Every
platform; the Triton FP8 linear is the same math with the weights kept in FP8."""

from __future__ import annotations

from .spec import Support

KEEPS_FP8 = False

SUPPORT = Support(
    devices=frozenset({"cpu", "cuda", "rocm"}),
    quants=frozenset({"fp8_block"}),
    cuda_graphs=True,  # a plain matmul: nothing syncs with the host
)
