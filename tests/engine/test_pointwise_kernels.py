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


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_rotary_kernel_writes_the_cache_as_the_attention_backends_store_it(dtype):
    """With the cache handed over, the K heads' programs also write the rotated keys and the values at each
    token's slot: the same cache as rotary, then torch_attention.store_kv (and nothing else touched)."""
    from atom.backends.torch_attention import store_kv

    t, hq, hk, d, blocks, block_size = 5, 4, 2, 16, 6, 4
    rope = RotaryEmbedding(d, 512, 10000.0).to(DEVICE)
    qkv = torch.randn(t, (hq + 2 * hk) * d, device=DEVICE).to(dtype)
    q = qkv[:, : hq * d].view(t, hq, d)
    k = qkv[:, hq * d : (hq + hk) * d].view(t, hk, d)
    v = qkv[:, (hq + hk) * d :].view(t, hk, d)
    positions = torch.tensor([0, 1, 7, 100, 300], device=DEVICE)
    slots = torch.tensor([3, 9, 10, 17, 22], device=DEVICE)  # scattered over blocks, some left empty
    shape = (blocks, block_size, hk, d)
    want_k_cache, want_v_cache = (
        torch.randn(shape, device=DEVICE).to(dtype),
        torch.randn(shape, device=DEVICE).to(dtype),
    )
    k_cache, v_cache = want_k_cache.clone(), want_v_cache.clone()
    assert triton_pointwise.can_store_kv(k, v, k_cache, v_cache)
    got_q, got_k = triton_pointwise.rotary(positions, q, k, rope.cos, rope.sin, (v, k_cache, v_cache, slots))
    want_q, want_k = triton_pointwise.rotary(positions, q, k, rope.cos, rope.sin)
    store_kv(want_k, v, want_k_cache, want_v_cache, slots)
    assert torch.equal(got_q, want_q) and torch.equal(got_k, want_k)
    assert torch.equal(k_cache, want_k_cache) and torch.equal(v_cache, want_v_cache)


def test_rotary_leaves_a_cache_of_another_dtype_to_the_backend():
    """No cast on the way into the cache: a cache in another dtype than the keys is not written here."""
    k = torch.zeros(2, 1, 8)
    cache = torch.zeros(2, 4, 1, 8, dtype=torch.float16)
    assert not triton_pointwise.can_store_kv(k, k, cache, cache)
    assert triton_pointwise.can_store_kv(k, k, cache.float(), cache.float())
