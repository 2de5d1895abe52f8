"""Every backend kernel against the torch reference on fresh random inputs, with outputs poisoned first.

On the CPU the Triton kernels run in Triton's interpreter (small shapes); on a GPU the same tests run compiled.
Thresholds are relative L2 errors per compute dtype: fp32 differs from torch only in summation order (1e-5);
bf16 rounds inputs and the intermediate activations to 8 mantissa bits (2e-2).
"""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl

from atom.backends import (
    fp8,
    mx_layout,
    mxfp4,
    torch_attention,
    torch_moe,
    triton_attention,
    triton_moe,
    triton_moe_tiles,
)
from atom.backends.routing import SIGMOID_GROUPED, SOFTMAX_TOPK, SOFTMAX_TOPK_RENORM, TOPK_SOFTMAX
from atom.backends.spec import AttentionSpec, MoESpec
from atom.backends.triton_moe_gemv import nibble_pair_as_f32
from atom.backends.triton_moe_grouping import SMALL_TILE_ELEMENTS, group_by_expert, group_by_expert_torch
from atom.layers.context import AttentionMetadata

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DTYPES = [torch.float32] + ([torch.bfloat16] if DEVICE == "cuda" else [])
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2}


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    return ((got.float() - ref.float()).norm() / ref.float().norm()).item()


def poisoned(*shape, dtype, device):
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


def paged_batch(context, query, page, spec, dtype):
    """Random paged KV cache and queries for sequences with `context` cached and `query` new tokens."""
    seq_lens = [c + q for c, q in zip(context, query, strict=True)]
    num_blocks = [-(-s // page) for s in seq_lens]
    pool = torch.randperm(sum(num_blocks) + 4)[: sum(num_blocks)] + 1  # scattered, never block 0
    tables = torch.zeros(len(seq_lens), max(num_blocks), dtype=torch.long)
    for i, chunk in enumerate(pool.split(num_blocks)):
        tables[i, : len(chunk)] = chunk
    cache_shape = (sum(num_blocks) + 5, page, spec.num_kv_heads, spec.head_dim)
    k_cache, v_cache = torch.randn(cache_shape).to(dtype), torch.randn(cache_shape).to(dtype)
    query_lens, seq_lens_t = torch.tensor(query), torch.tensor(seq_lens)
    qsl = torch.zeros(len(query) + 1, dtype=torch.long)
    qsl[1:] = query_lens.cumsum(0)
    seq_idx = torch.repeat_interleave(torch.arange(len(query)), query_lens)
    positions = torch.arange(sum(query)) - qsl[seq_idx] + (seq_lens_t - query_lens)[seq_idx]
    slots = tables[seq_idx, positions // page] * page + positions % page
    tensors = (positions, slots, seq_idx, qsl, query_lens, seq_lens_t, tables)
    meta = AttentionMetadata(*(t.to(DEVICE) for t in tensors), max(query), max(seq_lens), page)
    q = torch.randn(sum(query), spec.num_heads, spec.head_dim).to(dtype)
    return q.to(DEVICE), k_cache.to(DEVICE), v_cache.to(DEVICE), meta


ATTENTION_CASES = {
    # name: (spec, context lengths, query lengths, page size)
    "gpt-oss-like decode+prefill, sinks, window": (
        AttentionSpec(8, 2, 64, 16, True),
        [0, 5, 40, 3],
        [7, 1, 20, 1],
        4,
    ),
    "llama GQA 3, no window, head_dim 64": (AttentionSpec(9, 3, 64), [0, 31, 2], [33, 1, 1], 16),
    "MQA, page 2, window 8, sinks": (AttentionSpec(8, 1, 32, 8, True), [12, 0], [1, 19], 2),
    "head_dim 80 (padded)": (AttentionSpec(4, 4, 80), [3, 17], [5, 1], 8),
    "pure decode, long context": (AttentionSpec(4, 2, 64, None, True), [200, 77, 130], [1, 1, 1], 16),
    "batch-1 decode, 1000 keys, window 300, sinks": (AttentionSpec(8, 2, 64, 300, True), [999], [1], 16),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", ATTENTION_CASES)
def test_triton_paged_attention_matches_torch(case, dtype):
    spec, context, query, page = ATTENTION_CASES[case]
    q, k_cache, v_cache, meta = paged_batch(context, query, page, spec, dtype)
    sinks = torch.randn(spec.num_heads, device=DEVICE) if spec.sinks else None
    k_new = k_cache.flatten(0, 1)[meta.slot_mapping].clone()
    v_new = v_cache.flatten(0, 1)[meta.slot_mapping].clone()
    scale = spec.head_dim**-0.5
    ref = torch_attention.forward(q, k_new, v_new, k_cache, v_cache, meta, spec, sinks, scale)
    out = poisoned(*q.shape, dtype=dtype, device=DEVICE)
    got = triton_attention.paged_attention(q, k_cache, v_cache, meta, spec, sinks, scale, out=out)
    assert not got.isnan().any(), "rows left unwritten"
    assert rel_err(got, ref) < TOLERANCE[dtype]


@pytest.mark.parametrize("splits", [2, 8, 32])
@pytest.mark.parametrize(
    "case", ["pure decode, long context", "batch-1 decode, 1000 keys, window 300, sinks"]
)
def test_decode_with_the_keys_split_over_programs_matches_torch(case, splits):
    """Flash-decoding: each split's partial softmax, combined after (sinks once); 32 splits leave some
    empty (fewer key blocks than splits)."""
    spec, context, query, page = ATTENTION_CASES[case]
    q, k_cache, v_cache, meta = paged_batch(context, query, page, spec, torch.float32)
    sinks = torch.randn(spec.num_heads, device=DEVICE) if spec.sinks else None
    k_new = k_cache.flatten(0, 1)[meta.slot_mapping].clone()
    v_new = v_cache.flatten(0, 1)[meta.slot_mapping].clone()
    scale = spec.head_dim**-0.5
    ref = torch_attention.forward(q, k_new, v_new, k_cache, v_cache, meta, spec, sinks, scale)
    out = poisoned(*q.shape, dtype=torch.float32, device=DEVICE)
    got = triton_attention.paged_attention(
        q, k_cache, v_cache, meta, spec, sinks, scale, out=out, splits=splits
    )
    assert rel_err(got, ref) < TOLERANCE[torch.float32]
    assert triton_attention.key_splits(1, 1, spec.num_kv_heads, 1000, 64) > 1, "batch-1 decode splits"
    assert triton_attention.key_splits(1, 1, spec.num_kv_heads, 128, 64) == 1, "a 128-key window does not"
    assert triton_attention.key_splits(7, 1, spec.num_kv_heads, 1000, 64) == 1, "prefill does not"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_triton_mla_matches_torch(dtype):
    """MLA on the paged kernel (one shared latent head, value = the latent's first kv_rank dims) against
    the torch reference: prefill, chunked prefill and decode rows in one batch, scattered pages."""
    from types import SimpleNamespace

    from atom.backends import torch_mla, triton_mla

    heads, rank, rope, nope, v = 4, 32, 8, 16, 16
    latent_spec = AttentionSpec(heads, 1, rank + rope)
    _, cache, _, meta = paged_batch([0, 9, 30], [11, 1, 6], 4, latent_spec, dtype)
    cache = cache.squeeze(2)
    w_kv_b = torch.randn(heads * (nope + v), rank, device=DEVICE).to(dtype) * rank**-0.5
    layer = SimpleNamespace(
        kv_rank=rank,
        up_projections=lambda: (
            w_kv_b.view(heads, nope + v, rank)[:, :nope],
            w_kv_b.view(heads, nope + v, rank)[:, nope:],
        ),
    )
    t = meta.slot_mapping.shape[0]
    q_nope = torch.randn(t, heads, nope, device=DEVICE).to(dtype)
    q_rope = torch.randn(t, heads, rope, device=DEVICE).to(dtype)
    new = cache.view(-1, rank + rope)[meta.slot_mapping].clone()
    args = (q_nope, q_rope, new[:, :rank], new[:, rank:])
    scale = (nope + rope) ** -0.5
    ref = torch_mla.forward(*args, cache.clone(), meta, layer, scale)
    got = triton_mla.forward(*args, cache, meta, layer, scale)
    assert got.shape == (t, heads, v) and not got.isnan().any()
    assert rel_err(got, ref) < TOLERANCE[dtype]


# Cases only a GPU runs (the interpreter would take minutes): several K steps of every tile, the last one
# partial, at gpt-oss's 32 experts. A one-step case cannot show a tile whose pipelined loop is wrong.
GPU_CASES = {
    "gpt-oss prefill, several K steps": (
        MoESpec(32, 4, 416, 288, "mxfp4", "swiglu_oai", TOPK_SOFTMAX, has_bias=True),
        512,
    ),
}
MOE_CASES = {
    # name: (spec, tokens)
    "gpt-oss: mxfp4, swiglu_oai, topk_softmax, biases": (
        MoESpec(8, 2, 64, 64, "mxfp4", "swiglu_oai", TOPK_SOFTMAX, has_bias=True),
        5,
    ),
    "gpt-oss prefill: mxfp4, many tokens per expert": (
        MoESpec(4, 2, 96, 64, "mxfp4", "swiglu_oai", TOPK_SOFTMAX, has_bias=True),
        70,
    ),
    "mixtral: bf16 weights, silu, softmax_topk_renorm": (
        MoESpec(6, 2, 64, 96, "bf16", "silu", SOFTMAX_TOPK_RENORM),
        9,
    ),
    "qwen-like: softmax_topk without renorm, top-4, odd sizes": (
        MoESpec(16, 4, 48, 80, "bf16", "silu", SOFTMAX_TOPK),
        3,
    ),
    "deepseek-like: sigmoid grouped top-k, routed scaling": (
        MoESpec(8, 2, 64, 32, "bf16", "silu", SIGMOID_GROUPED, groups=(4, 2), routed_scaling=2.5),
        7,
    ),
    "deepseek FP8 experts: e4m3 with 16x16 block scales, partial blocks in H": (
        MoESpec(
            8,
            2,
            72,
            32,
            "fp8_block",
            "silu",
            SIGMOID_GROUPED,
            groups=(4, 2),
            routed_scaling=2.5,
            quant_block=16,
        ),
        7,
    ),  # fmt: skip
    "deepseek FP8 prefill: many tokens per expert": (
        MoESpec(4, 2, 64, 64, "fp8_block", "silu", SOFTMAX_TOPK_RENORM, quant_block=32),
        70,
    ),
}


def random_experts(spec: MoESpec, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    e, h, i = spec.num_experts, spec.hidden_size, spec.intermediate_size
    w13, w2 = torch.randn(e, 2 * i, h) * h**-0.5, torch.randn(e, h, i) * i**-0.5
    if spec.quant == "mxfp4":
        (b13, s13), (b2, s2) = mxfp4.quantize(w13), mxfp4.quantize(w2)
        w = {"w13_blocks": b13, "w13_scales": s13, "w2_blocks": b2, "w2_scales": s2}
    elif spec.quant == "fp8_block":  # per expert, as the checkpoints store them
        block = (spec.quant_block, spec.quant_block)
        w = {}
        for name, t in (("w13", w13), ("w2", w2)):
            values, scales = zip(*(fp8.quantize(m, block) for m in t), strict=True)
            w[name], w[f"{name}_scale"] = torch.stack(values), torch.stack(scales)
    else:
        w = {"w13": w13.to(dtype), "w2": w2.to(dtype)}
    if spec.has_bias:
        w |= {"w13_bias": torch.randn(e, 2 * i).to(dtype), "w2_bias": torch.randn(e, h).to(dtype)}
    if spec.routing == SIGMOID_GROUPED:
        w["routing_bias"] = torch.randn(e) * 0.1  # the router's correction bias (fp32)
    return {k: v.to(DEVICE) for k, v in w.items()}


def route_for(spec: MoESpec, logits: torch.Tensor, w: dict[str, torch.Tensor]):
    return triton_moe.route(
        logits, spec.top_k, spec.routing, w.get("routing_bias"), spec.groups, spec.routed_scaling
    )


def moe_case(case: str, dtype: torch.dtype):
    """-> (spec, x, expert weights, router logits, the torch reference output) for one of MOE_CASES."""
    spec, tokens = MOE_CASES.get(case) or GPU_CASES[case]
    w = random_experts(spec, dtype)
    x = torch.randn(tokens, spec.hidden_size, device=DEVICE).to(dtype)
    logits = torch.randn(tokens, spec.num_experts, device=DEVICE)
    return spec, x, w, logits, torch_moe.forward(x, logits, w, spec)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", MOE_CASES)
def test_triton_fused_moe_matches_torch(case, dtype):
    spec, x, w, logits, ref = moe_case(case, dtype)
    weights, ids = route_for(spec, logits, w)
    got = triton_moe.fused_moe(
        x, weights, ids, w, spec, alloc=lambda *s, **kw: torch.full(s, float("nan"), **kw)
    )
    assert not got.isnan().any(), "a token's output was left unwritten"
    assert rel_err(got, ref) < TOLERANCE[dtype]


@pytest.mark.parametrize("words", [True, False], ids=["words", "bytes"])
@pytest.mark.parametrize(
    "case",
    [
        c
        for c, (spec, _) in MOE_CASES.items()
        if spec.routing in triton_moe.IN_KERNEL and spec.quant != "fp8_block"
    ],
)
def test_the_gemv_routes_inside_its_kernels_as_torch_does(case, words):
    """triton_moe.forward from the router logits with a GEMV tile: each program takes its token's top-k
    (and softmax, renormalised or not) itself. Same outputs as torch routing then torch experts."""
    spec, x, w, logits, ref = moe_case(case, torch.float32)
    got = triton_moe.forward(x, logits, w, spec, tile=triton_moe.Tile(1, 8, 128, 4, 2, words=words))
    assert rel_err(got, ref) < TOLERANCE[torch.float32]


def test_a_gemv_tile_for_fp8_experts_is_refused_by_name():
    spec, x, w, logits, _ = moe_case(
        "deepseek FP8 experts: e4m3 with 16x16 block scales, partial blocks in H", torch.float32
    )
    weights, ids = route_for(spec, logits, w)
    with pytest.raises(ValueError, match="FP8 experts take the GEMM tiles"):
        triton_moe.fused_moe(x, weights, ids, w, spec, tile=triton_moe.Tile(1, 8, 128, 4, 2))


def test_missing_expert_biases_are_named_not_read_from_another_tensor():
    spec, x, w, logits, _ = moe_case("gpt-oss: mxfp4, swiglu_oai, topk_softmax, biases", torch.float32)
    weights, ids = route_for(spec, logits, w)
    without = {name: t for name, t in w.items() if name != "w2_bias"}
    with pytest.raises(ValueError, match="expert biases but the weights lack w2_bias"):
        triton_moe.fused_moe(x, weights, ids, without, spec)


def test_fp8_experts_refuse_a_weights_first_tile_by_name():
    spec, x, w, logits, _ = moe_case(
        "deepseek FP8 experts: e4m3 with 16x16 block scales, partial blocks in H", torch.float32
    )
    weights, ids = route_for(spec, logits, w)
    tile = triton_moe.Tile(16, 32, 64, 4, 2, swapped=True)
    with pytest.raises(ValueError, match="FP8 experts and the A8W4 math take row-major tiles"):
        triton_moe.fused_moe(x, weights, ids, w, spec, tile=tile)


@pytest.mark.parametrize("arch", [*triton_moe_tiles.TILES, "gfx000"])
def test_fp8_and_a8w4_get_a_table_without_weights_first_tiles_on_every_arch(arch):
    assert not any(tile.swapped for _, tile in triton_moe_tiles.tiles_for(arch, swapped_ok=False))
    assert triton_moe_tiles.tiles_for(arch, swapped_ok=False)[-1][0] is None  # every size has a tile


ALL_TILES = [(arch, tile) for arch, table in triton_moe_tiles.TILES.items() for _, tile in table]
ALL_TILES += [(arch, tile) for arch, table in triton_moe_tiles.ROW_MAJOR_TILES.items() for _, tile in table]
# routes the sweep (`atom bench moe-tiles`) tries that no table uses yet
ALL_TILES += [("sweep", triton_moe.Tile(1, 16, 256, 4, 2, words=True))]


@pytest.mark.parametrize(("arch", "tile"), ALL_TILES, ids=str)
def test_every_tile_in_the_tables_computes_the_same_moe(arch, tile):
    """Each arch's tiles on an MXFP4 layer in bf16, compiled for real on a GPU, over several K steps there.
    The interpreter runs the UPCAST tiles in fp32 (its bf16 tl.dot is wrong) and the dot_scaled ones in
    bf16, on one K step."""
    dtype = torch.bfloat16 if DEVICE == "cuda" or tile.scaled_dot else torch.float32
    case = (
        "gpt-oss prefill, several K steps"
        if DEVICE == "cuda"
        else "gpt-oss prefill: mxfp4, many tokens per expert"
    )
    spec, x, w, logits, ref = moe_case(case, dtype)
    if tile.fragments:  # what triton_moe.prepare adds at load time
        w |= mx_layout.prepare(w, interleaved=spec.activation == "swiglu_oai")
    weights, ids = route_for(spec, logits, w)
    got = triton_moe.fused_moe(x, weights, ids, w, spec, tile=tile)
    assert rel_err(got, ref) < TOLERANCE[dtype]


@pytest.mark.parametrize("group", [group_by_expert, group_by_expert_torch], ids=["one-program", "torch"])
def test_group_by_expert_pads_each_expert_to_whole_blocks(group):
    ids = torch.tensor([[3, 0], [3, 1], [0, 3], [3, 2]], device=DEVICE)
    pairs, block_expert = group(ids, num_experts=5, block_m=4)
    pairs, block_expert = pairs.cpu(), block_expert.cpu()
    used = block_expert[block_expert >= 0].tolist()
    assert used == [0, 1, 2, 3]  # expert 4 got nothing; each other expert one block
    for b, e in enumerate(used):
        members = pairs[b * 4 : (b + 1) * 4]
        members = members[members < ids.numel()]
        assert (ids.flatten().cpu()[members] == e).all()
    assert sorted(pairs[pairs < ids.numel()].tolist()) == list(range(ids.numel()))  # every pair exactly once


@pytest.mark.parametrize(
    ("tokens", "num_experts", "top_k", "block_m"), [(1, 32, 4, 16), (37, 8, 2, 4), (16, 128, 4, 16)]
)
def test_one_program_grouping_matches_torch_grouping(tokens, num_experts, top_k, block_m):
    gen = torch.Generator().manual_seed(tokens)
    ids = torch.stack([torch.randperm(num_experts, generator=gen)[:top_k] for _ in range(tokens)]).to(DEVICE)
    assert ids.numel() * num_experts <= SMALL_TILE_ELEMENTS  # this size takes the one-program kernel
    got, want = group_by_expert(ids, num_experts, block_m), group_by_expert_torch(ids, num_experts, block_m)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


@triton.jit
def _decode_words_kernel(words_ptr, out_ptr):
    """out[c, i] = nibble i of word c, rescaled by 2^126 (nibble_pair_as_f32 leaves it out)."""
    words = tl.load(words_ptr + tl.arange(0, 16)).to(tl.uint32, bitcast=True)
    for p in tl.static_range(4):
        low, high = nibble_pair_as_f32(words, p)
        tl.store(out_ptr + tl.arange(0, 16) * 8 + p, low * 8.507059173023462e37)  # 2^126
        tl.store(out_ptr + tl.arange(0, 16) * 8 + p + 4, high * 8.507059173023462e37)


def test_the_word_decoder_gives_every_e2m1_code_exactly_at_every_nibble():
    """Word c holds code c in all 8 nibbles; 0.5 passes through an fp32 subnormal, which a multiply that
    flushes subnormals would turn into 0, and the sign bit of nibble 7 is the word's own sign bit."""
    words = torch.tensor([c * 0x11111111 for c in range(16)], dtype=torch.int64).to(torch.uint32)
    out = torch.empty(16, 8, dtype=torch.float32, device=DEVICE)
    _decode_words_kernel[(1,)](words.view(torch.int32).to(DEVICE), out)
    table = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0]
    expected = torch.tensor(table + [-v for v in table], device=DEVICE)[:, None].expand(16, 8)
    assert torch.equal(out, expected), out


def test_word_and_byte_decoding_give_the_same_moe():
    """The GEMV's two MXFP4 decoders in fp32 on a layer whose hidden size is not a multiple of BLOCK_K
    (the last words and scales masked): the same outputs up to summation order."""
    spec, x, w, logits, ref = moe_case("gpt-oss: mxfp4, swiglu_oai, topk_softmax, biases", torch.float32)
    weights, ids = route_for(spec, logits, w)
    poison = lambda *s, **kw: torch.full(s, float("nan"), **kw)  # noqa: E731
    got = {
        words: triton_moe.fused_moe(
            x, weights, ids, w, spec, alloc=poison, tile=triton_moe.Tile(1, 8, 256, 4, 2, words=words)
        )
        for words in (True, False)
    }
    assert rel_err(got[True], ref) < 1e-5 and rel_err(got[True], got[False]) < 1e-5


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize(
    "m,n,k,block,bias,splits",
    [
        (1, 256, 384, (128, 128), False, None),
        (1, 256, 640, (128, 128), True, 3),  # K split over programs, partials summed, bias added once
        (5, 300, 200, (128, 128), True, None),
        (70, 96, 160, (32, 32), False, 2),
    ],
)
def test_triton_fp8_linear_matches_dequantized_weights(dtype, m, n, k, block, bias, splits):
    """FP8 weights with block scales (partial blocks at the edges, decode and prefill row counts, K split
    or not) against the torch path: the weights dequantized, then a plain matmul."""
    from atom.backends import fp8
    from atom.backends.triton_fp8_linear import fp8_block_linear

    values, scale = fp8.quantize(torch.randn(n, k) * 0.05, block)
    values, scale = values.to(DEVICE), scale.to(DEVICE)
    x = torch.randn(m, k, device=DEVICE).to(dtype)
    b = torch.randn(n, device=DEVICE).to(dtype) if bias else None
    weight = fp8.dequantize(values, scale, block).to(dtype)
    ref = torch.nn.functional.linear(x.float(), weight.float(), None if b is None else b.float())
    out = torch.full((m, n), float("nan"), dtype=dtype, device=DEVICE)
    got = fp8_block_linear(x, values, scale, b, block, out=out, splits=splits)
    assert got.data_ptr() == out.data_ptr() and not got.isnan().any()
    assert rel_err(got, ref) < TOLERANCE[dtype]
