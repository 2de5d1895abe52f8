"""The few-rows dense GEMV against F.linear (Triton's interpreter on the CPU, compiled on a GPU)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from atom.backends import triton_gemv
from atom.layers.linear import dense

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32] + ([torch.bfloat16] if DEVICE == "cuda" else [])


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
@pytest.mark.parametrize(
    ("rows", "n", "k", "tile"),
    [
        (1, 40, 128, (8, 64, 1)),  # K a whole number of blocks
        (3, 37, 200, (8, 64, 1)),  # a K tail, N past the last block, rows padded to 4 (the kernel can)
        (4, 16, 96, (16, 32, 2)),
        (1, 9, 64, None),  # the arch's own tile
    ],
)
def test_gemv_matches_f_linear(rows, n, k, tile, bias, dtype):
    gen = torch.Generator().manual_seed(rows * 1000 + n)
    wide = torch.randn(rows, k + 24, generator=gen).to(DEVICE, dtype)
    x = wide[:, 7 : 7 + k]  # rows strided, as a view of a wider activation
    weight = (torch.randn(n, k, generator=gen) * k**-0.5).to(DEVICE, dtype)
    b = torch.randn(n, generator=gen).to(DEVICE, dtype) if bias else None
    got = triton_gemv.gemv(x, weight, b, tile)
    want = F.linear(x.double(), weight.double(), b.double() if bias else None)
    assert got.shape == (rows, n) and got.dtype == dtype
    tol = 1e-5 if dtype == torch.float32 else 8e-3
    torch.testing.assert_close(got.double(), want, rtol=tol, atol=tol)


def test_dense_takes_the_gemv_only_where_it_applies():
    x, w = torch.randn(2, 8), torch.randn(4, 8)
    assert not triton_gemv.takes(x, w), "a CPU tensor: F.linear"
    torch.testing.assert_close(dense(x, w), F.linear(x, w))
    if DEVICE == "cuda":
        x16, w16 = x.to("cuda", torch.bfloat16), w.to("cuda", torch.bfloat16)
        assert triton_gemv.takes(x16, w16)
        assert not triton_gemv.takes(torch.randn(triton_gemv.MAX_ROWS + 1, 8).to(x16), w16)
        assert not triton_gemv.takes(x16, w16.t().contiguous().t()), "a column-major weight"
