"""The weights-first MoE GEMMs (backends/triton_moe_swapped.py): their MXFP4 decoders value for value, and
the layer against torch for every routing and activation. Compiled for real on a GPU, interpreted here."""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from atom.backends import mx_layout, mxfp4, triton_moe
from atom.backends import triton_moe_swapped as swapped
from atom.backends.triton_moe_common import as_words

from .test_backends_vs_torch import DEVICE, MOE_CASES, TOLERANCE, moe_case, rel_err, route_for

ROWS, K = 16, 64
# bf16 tiles only where compiled: Triton's interpreter reads a uint16 bitcast to bf16 as zero, and its bf16
# emulation flushes the subnormals these tests reach
DECODE_DTYPES = [torch.float32] + ([torch.bfloat16] if DEVICE == "cuda" else [])


@triton.jit
def _tile_kernel(
    w_ptr, s_ptr, out_ptr, stride_row, DECODE: tl.constexpr, ROWS: tl.constexpr, K: tl.constexpr,
    BF16: tl.constexpr,
):  # fmt: skip
    rows = tl.arange(0, ROWS)
    dtype: tl.constexpr = tl.bfloat16 if BF16 else tl.float32
    tile = swapped._weight_tile(w_ptr, s_ptr, rows, rows < ROWS, 0, K, stride_row, K // 32, dtype, DECODE, K)
    tl.store(out_ptr + rows[:, None] * K + tl.arange(0, K)[None, :], tile.to(tl.float32))


@pytest.mark.parametrize("dtype", DECODE_DTYPES, ids=str)
@pytest.mark.parametrize("decode", [swapped.BYTES, swapped.WORDS], ids=["bytes", "words"])
def test_both_decoders_give_every_code_at_every_nibble_with_every_kind_of_scale(decode, dtype):
    """Every E2M1 code at every nibble of a word (and random words), block scales from 2^-127 (E8M0 zero: the
    smallest values are subnormals) to 2^73; exactly the reference's values in fp32 and in bf16 (whose tiles
    the words decoder multiplies in bf16 pairs: every value is representable, so nothing may round)."""
    gen = torch.Generator().manual_seed(0)
    same = torch.tensor([c * 0x11111111 for c in range(16)], dtype=torch.int64)  # code c in all 8 nibbles
    mixed = torch.randint(0, 1 << 32, (ROWS * K // 8 - 16,), dtype=torch.int64, generator=gen)
    words = torch.cat([same, mixed]).to(torch.uint32).view(torch.int32)
    codes = words.view(torch.uint8).reshape(ROWS, K // 32, 16)
    scales = torch.tensor([0, 1, 100, 127, 150, 200, 127, 126] * 4, dtype=torch.uint8).reshape(ROWS, K // 32)
    want = mxfp4.dequantize(codes, scales)
    assert torch.equal(want.to(dtype).float(), want)  # the values are exact in either dtype
    blocks = codes[None].to(DEVICE)
    weights = as_words(blocks)[0] if decode == swapped.WORDS else blocks[0].flatten(1)
    out = torch.empty(ROWS, K, dtype=torch.float32, device=DEVICE)
    _tile_kernel[(1,)](weights, scales.to(DEVICE), out, weights.stride(0), DECODE=decode, ROWS=ROWS, K=K,
                      BF16=dtype == torch.bfloat16)  # fmt: skip
    assert torch.equal(out.cpu(), want), (out.cpu() - want).abs().max()


@pytest.mark.parametrize("words", [False, True], ids=["bytes", "words"])
@pytest.mark.parametrize("case", [c for c, (spec, _) in MOE_CASES.items() if spec.quant != "fp8_block"])
def test_the_weights_first_kernels_compute_the_same_moe(case, words):
    """MXFP4 and dense experts, every routing and activation, workspaces poisoned. fp32 here (the
    interpreter's bf16 tl.dot is wrong: the word decoder is checked above), bf16 on a GPU."""
    dtype = torch.bfloat16 if DEVICE == "cuda" else torch.float32
    spec, x, w, logits, ref = moe_case(case, dtype)
    weights, ids = route_for(spec, logits, w)
    tile = triton_moe.Tile(16, 32, 64, 4, 2, words=words, swapped=True)
    poison = lambda *s, **kw: torch.full(s, float("nan"), **kw)  # noqa: E731
    got = triton_moe.fused_moe(x, weights, ids, w, spec, alloc=poison, tile=tile)
    assert not got.isnan().any(), "a token's output was left unwritten"
    assert rel_err(got, ref) < TOLERANCE[dtype]


@pytest.mark.parametrize("case", [c for c, (spec, _) in MOE_CASES.items() if spec.quant == "mxfp4"])
def test_the_fragment_layout_computes_the_same_moe(case):
    """MXFP4 experts regrouped at load time (mx_layout.prepare), decoded per MMA fragment."""
    spec, x, w, logits, ref = moe_case(case, torch.bfloat16 if DEVICE == "cuda" else torch.float32)
    w = w | mx_layout.prepare(w, interleaved=spec.activation == "swiglu_oai")
    weights, ids = route_for(spec, logits, w)
    tile = triton_moe.Tile(16, 32, 64, 4, 2, swapped=True, fragments=True)
    got = triton_moe.fused_moe(x, weights, ids, w, spec, tile=tile)
    assert rel_err(got, ref) < TOLERANCE[x.dtype]


def test_a_fragments_tile_without_the_layout_is_refused_by_name():
    spec, x, w, logits, _ = moe_case("gpt-oss: mxfp4, swiglu_oai, topk_softmax, biases", torch.float32)
    weights, ids = route_for(spec, logits, w)
    tile = triton_moe.Tile(16, 32, 64, 4, 2, swapped=True, fragments=True)
    with pytest.raises(ValueError, match="a fragments tile needs the experts in that layout"):
        triton_moe.fused_moe(x, weights, ids, w, spec, tile=tile)


def test_more_blocks_than_a_launch_takes_is_refused_with_the_knob(monkeypatch):
    """The weights-first kernels put the pair blocks on the grid's second axis (CUDA allows 65,535); a batch
    past it is refused, naming the knob, before anything launches (the limit lowered here to reach it)."""
    spec, x, w, logits, _ = moe_case("gpt-oss prefill: mxfp4, many tokens per expert", torch.float32)
    weights, ids = route_for(spec, logits, w)
    monkeypatch.setattr(triton_moe, "MAX_GRID_Y", 2)
    tile = triton_moe.Tile(16, 32, 64, 4, 2, swapped=True)
    with pytest.raises(ValueError, match="max-num-batched-tokens"):
        triton_moe.fused_moe(x, weights, ids, w, spec, tile=tile)
