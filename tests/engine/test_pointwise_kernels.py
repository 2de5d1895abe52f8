"""The fused RMSNorm and rotary kernels against the layers' torch reference code (interpreter on the CPU)."""

from __future__ import annotations

import pytest
import torch

from atom.backends import triton_pointwise
from atom.layers.linear import RMSNorm
from atom.layers.rotary import RotaryEmbedding

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32, torch.bfloat16] if DEVICE == "cuda" else [torch.float32]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(("rows", "dim"), [(1, 64), (5, 2880 // 16), (3, 100)])
def test_rms_norm_kernel_matches_the_reference(rows, dim, dtype):
    norm = RMSNorm(dim, 1e-5).to(DEVICE)
    norm.weight.copy_(torch.randn(dim))
    x = (torch.randn(rows, dim, device=DEVICE) * 3).to(dtype)
    got, want = triton_pointwise.rms_norm(x, norm.weight, norm.eps), norm.reference(x)
    assert got.dtype == dtype and got.shape == x.shape
    torch.testing.assert_close(got, want, rtol=1e-5 if dtype == torch.float32 else 1e-2, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_rms_norm_kernel_adds_the_residual_as_the_reference_does(dtype):
    norm = RMSNorm(100, 1e-5).to(DEVICE)
    norm.weight.copy_(torch.randn(100))
    x = (torch.randn(7, 100, device=DEVICE) * 3).to(dtype)
    residual = (torch.randn(7, 200, device=DEVICE) * 30).to(dtype)[:, ::2]  # strided, as views can be
    got, got_sum = triton_pointwise.rms_norm(x, norm.weight, norm.eps, residual)
    want, want_sum = norm.reference(x, residual)
    assert torch.equal(got_sum, want_sum), "the residual stream must be the exact sum, rounded as torch does"
    assert got.dtype == got_sum.dtype == dtype and got_sum.is_contiguous()
    torch.testing.assert_close(got, want, rtol=1e-5 if dtype == torch.float32 else 1e-2, atol=1e-5)
    torch.testing.assert_close(got, norm.reference(want_sum))


def test_rms_norm_kernel_reads_a_strided_input():
    norm = RMSNorm(32, 1e-6).to(DEVICE)
    x = torch.randn(4, 64, device=DEVICE)[:, ::2]  # last dim not contiguous
    torch.testing.assert_close(triton_pointwise.rms_norm(x, norm.weight, norm.eps), norm.reference(x))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "scaling", [None, {"rope_type": "yarn", "factor": 32.0, "original_max_position_embeddings": 64}]
)
def test_rotary_kernel_matches_the_reference(scaling, dtype):
    rope = RotaryEmbedding(16, 512, 150000.0, scaling).to(DEVICE)
    t, hq, hk = 6, 4, 2
    qkv = torch.randn(t, (hq + 2 * hk) * 16, device=DEVICE).to(dtype)
    q = qkv[:, : hq * 16].view(t, hq, 16)  # strided views, as a fused qkv projection would give
    k = qkv[:, hq * 16 : (hq + hk) * 16].view(t, hk, 16)
    positions = torch.tensor([0, 1, 7, 100, 300, 511], device=DEVICE)
    got_q, got_k = triton_pointwise.rotary(positions, q, k, rope.cos, rope.sin)
    want_q, want_k = rope.reference(positions, q, k)
    tol = {"rtol": 1e-5, "atol": 1e-5} if dtype == torch.float32 else {"rtol": 1e-2, "atol": 1e-2}
    torch.testing.assert_close(got_q, want_q, **tol)
    torch.testing.assert_close(got_k, want_k, **tol)
