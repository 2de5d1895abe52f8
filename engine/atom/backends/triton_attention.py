"""Paged attention in Triton: one kernel for prefill, chunked prefill and decode (varlen over sequences).

Each program handles one (sequence, query tile, KV head). Its rows are the query tokens of the tile times the
query heads sharing that KV head (GQA), so decode fills a tensor-core tile even at one token per sequence.
Keys are gathered through the block table inside the kernel: no per-sequence Python work, any page size.
Attention sinks start the online softmax (a logit every row sees); the sliding window narrows the key range.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..layers.context import AttentionMetadata
from .spec import AttentionSpec
from .torch_attention import store_kv
from .triton_attention_support import SUPPORT  # noqa: F401  (what this backend declares)
from .triton_common import device_arch, dot


@triton.jit
def _paged_attention_kernel(
    q_ptr,
    k_cache_ptr,
    v_cache_ptr,
    out_ptr,
    sinks_ptr,
    block_tables_ptr,
    query_start_loc_ptr,
    seq_lens_ptr,
    part_acc_ptr,  # SPLITS > 1: [T, H, SPLITS, HEAD_DIM_PAD] fp32, each split's unnormalised output
    part_ml_ptr,  # SPLITS > 1: [T, H, SPLITS, 2] fp32, each split's running max and sum
    scale,
    stride_qt,
    stride_qh,
    stride_kb,
    stride_ks,
    stride_kh,
    stride_ot,
    stride_oh,
    stride_bt,
    GROUP: tl.constexpr,  # query heads per KV head
    PAGE: tl.constexpr,  # KV-cache block size
    HEAD_DIM: tl.constexpr,
    HEAD_DIM_PAD: tl.constexpr,
    BLOCK_Q: tl.constexpr,  # query tokens per program
    BLOCK_M: tl.constexpr,  # power of two >= BLOCK_Q * GROUP
    BLOCK_N: tl.constexpr,  # keys per iteration
    SLIDING_WINDOW: tl.constexpr,  # 0: none
    HAS_SINKS: tl.constexpr,
    IEEE: tl.constexpr,  # fp32 inputs: exact dots rather than tf32
    SPLITS: tl.constexpr,  # > 1 (decode): the keys split over this many programs, combined after
):
    seq = tl.program_id(0)
    q_tile = tl.program_id(1)
    kv_head = tl.program_id(2) // SPLITS
    split = tl.program_id(2) % SPLITS
    q_start = tl.load(query_start_loc_ptr + seq)
    q_len = tl.load(query_start_loc_ptr + seq + 1) - q_start
    if q_tile * BLOCK_Q >= q_len:
        return
    seq_len = tl.load(seq_lens_ptr + seq)
    first_pos = seq_len - q_len  # position of the sequence's first query token

    rows = tl.arange(0, BLOCK_M)
    q_tok = q_tile * BLOCK_Q + rows // GROUP
    head = kv_head * GROUP + rows % GROUP
    row_ok = (rows < BLOCK_Q * GROUP) & (q_tok < q_len)
    q_pos = first_pos + q_tok
    dims = tl.arange(0, HEAD_DIM_PAD)
    dim_ok = dims < HEAD_DIM

    q = tl.load(
        q_ptr + (q_start + q_tok)[:, None] * stride_qt + head[:, None] * stride_qh + dims[None, :],
        mask=row_ok[:, None] & dim_ok[None, :],
        other=0.0,
    )
    if HAS_SINKS and SPLITS == 1:  # split: the combine adds the sinks, once
        m_i = tl.load(sinks_ptr + head, mask=row_ok, other=0.0).to(tl.float32)
        l_i = tl.full([BLOCK_M], 1.0, tl.float32)  # exp(sink - m_i) with m_i = sink
    else:
        m_i = tl.full([BLOCK_M], -1.0e30, tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, HEAD_DIM_PAD], tl.float32)

    last_pos = first_pos + tl.minimum(q_len, (q_tile + 1) * BLOCK_Q) - 1  # causal: no key after it
    lo = 0
    if SLIDING_WINDOW > 0:
        lo = tl.maximum(0, first_pos + q_tile * BLOCK_Q - SLIDING_WINDOW + 1)
        lo = (lo // BLOCK_N) * BLOCK_N
    hi = last_pos + 1
    if SPLITS > 1:  # this split's share of the key range, whole BLOCK_N blocks (empty for some)
        share = tl.cdiv(tl.cdiv(hi - lo, SPLITS), BLOCK_N) * BLOCK_N
        lo = lo + split * share
        hi = tl.minimum(hi, lo + share)
    for start in range(lo, hi, BLOCK_N):
        k_pos = start + tl.arange(0, BLOCK_N)
        k_ok = k_pos <= last_pos
        block = tl.load(block_tables_ptr + seq * stride_bt + k_pos // PAGE, mask=k_ok, other=0)
        kv_off = block * stride_kb + (k_pos % PAGE) * stride_ks + kv_head * stride_kh
        kv_mask = k_ok[:, None] & dim_ok[None, :]
        k = tl.load(k_cache_ptr + kv_off[:, None] + dims[None, :], mask=kv_mask, other=0.0)
        s = dot(q, tl.trans(k), tl.zeros([BLOCK_M, BLOCK_N], tl.float32), IEEE) * scale
        allowed = (k_pos[None, :] <= q_pos[:, None]) & k_ok[None, :]
        if SLIDING_WINDOW > 0:
            allowed = allowed & (q_pos[:, None] - k_pos[None, :] < SLIDING_WINDOW)
        s = tl.where(allowed, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        p = tl.exp(s - m_new[:, None])
        alpha = tl.exp(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = tl.load(v_cache_ptr + kv_off[:, None] + dims[None, :], mask=kv_mask, other=0.0)
        acc = dot(p.to(v.dtype), v, acc * alpha[:, None], IEEE)
        m_i = m_new

    if SPLITS > 1:
        heads = tl.num_programs(2) // SPLITS * GROUP
        part = ((q_start + q_tok) * heads + head) * SPLITS + split
        ok = row_ok[:, None] & dim_ok[None, :]
        tl.store(part_acc_ptr + part[:, None] * HEAD_DIM_PAD + dims[None, :], acc, mask=ok)
        tl.store(part_ml_ptr + part * 2, m_i, mask=row_ok)
        tl.store(part_ml_ptr + part * 2 + 1, l_i, mask=row_ok)
        return
    out = acc / l_i[:, None]
    tl.store(
        out_ptr + (q_start + q_tok)[:, None] * stride_ot + head[:, None] * stride_oh + dims[None, :],
        out.to(out_ptr.dtype.element_ty),
        mask=row_ok[:, None] & dim_ok[None, :],
    )


@triton.jit
def _combine_splits_kernel(
    part_acc_ptr, part_ml_ptr, sinks_ptr, out_ptr, heads, stride_ot, stride_oh,
    HEAD_DIM: tl.constexpr, HEAD_DIM_PAD: tl.constexpr, SPLITS: tl.constexpr, HAS_SINKS: tl.constexpr,
):  # fmt: skip
    """Program (token, head): the splits' partial softmaxes as one (the sink, if any, counted once)."""
    token, head = tl.program_id(0), tl.program_id(1)
    part = (token * heads + head) * SPLITS + tl.arange(0, SPLITS)
    m = tl.load(part_ml_ptr + part * 2)
    l = tl.load(part_ml_ptr + part * 2 + 1)  # noqa: E741
    m_max = tl.max(m, axis=0)
    if HAS_SINKS:
        sink = tl.load(sinks_ptr + head).to(tl.float32)
        m_max = tl.maximum(m_max, sink)
    weight = tl.exp(m - m_max)  # empty splits: m = -1e30, weight 0
    total = tl.sum(l * weight, axis=0)
    if HAS_SINKS:
        total += tl.exp(sink - m_max)
    dims = tl.arange(0, HEAD_DIM_PAD)
    acc = tl.load(part_acc_ptr + part[:, None] * HEAD_DIM_PAD + dims[None, :])
    out = tl.sum(acc * weight[:, None], axis=0) / total
    tl.store(out_ptr + token * stride_ot + head * stride_oh + dims, out.to(out_ptr.dtype.element_ty),
             mask=dims < HEAD_DIM)  # fmt: skip


# Keys per iteration, pipeline stages and warps per arch. sm90 is what ran on the H100/H200. The gfx entries
# have never run (no AMD GPU here) but are compiled for their arch in CI (amd_compile.py): with 4 warps,
# 32 or 64 keys spilled 38-332 registers at head_dim 64 and 128; 16 keys with 8 warps spill none.
KEY_TILES = {"gfx942": (16, 2, 8), "gfx950": (16, 2, 8), "sm90": (64, 3, 4), "default": (64, 2, 4)}


# Decode with fewer (sequence, KV head) programs than this splits the keys of each over more programs
# (flash-decoding): a batch-1 step of gpt-oss has 8 programs on a 132-SM GPU, each walking the whole
# context (157 us at 8k keys on an H200, 13 split 32 ways: bench/attention_splits.py). At most MAX_SPLITS,
# and only where a sequence can have 4 key blocks a split: a 128-key sliding window never splits (the
# combine costs about 1.4 us a layer where there is little to split).
DECODE_PROGRAMS = 256
MAX_SPLITS = 32


def key_splits(max_query_len: int, num_seqs: int, num_kv_heads: int, max_keys: int, block_n: int) -> int:
    """Programs per (sequence, KV head): a power of two (the combine's arange), 1 for prefill."""
    if max_query_len != 1:
        return 1
    wanted = DECODE_PROGRAMS // max(1, num_seqs * num_kv_heads)
    splits = min(MAX_SPLITS, wanted, max_keys // (4 * block_n))
    return 1 << (max(1, splits).bit_length() - 1)


def _tiles(max_query_len: int, group: int) -> tuple[int, int]:
    """(BLOCK_Q, BLOCK_M): decode packs the GQA group into rows; prefill takes more query tokens per tile."""
    block_m = max(16, triton.next_power_of_2(group))
    if max_query_len > 1:
        block_m = max(64, block_m)
    return max(1, block_m // group), block_m


def paged_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    meta: AttentionMetadata,
    spec: AttentionSpec,
    sinks: torch.Tensor | None,
    scale: float,
    out: torch.Tensor | None = None,
    splits: int | None = None,
) -> torch.Tensor:
    """q [T, H, D] against the paged cache (already holding this step's K/V) -> [T, H, D]. splits: the
    keys of each (sequence, KV head) over this many programs (default: key_splits; 1 for prefill)."""
    out = torch.empty_like(q) if out is None else out  # every row is a sequence's (padded graph rows too)
    group = spec.num_heads // spec.num_kv_heads
    block_q, block_m = _tiles(meta.max_query_len, group)
    block_n, stages, warps = KEY_TILES.get(device_arch(q.device), KEY_TILES["default"])
    num_seqs = meta.block_tables.shape[0]
    if splits is None:
        max_keys = min(meta.max_seq_len, spec.sliding_window or meta.max_seq_len)
        splits = key_splits(meta.max_query_len, num_seqs, spec.num_kv_heads, max_keys, block_n)
    head_dim_pad = max(16, triton.next_power_of_2(spec.head_dim))
    rows, heads = q.shape[0], spec.num_heads
    assert splits & (splits - 1) == 0, "splits must be a power of two"
    part_acc = part_ml = q  # unused without splits
    if splits > 1:
        part_acc = torch.empty(rows * heads * splits, head_dim_pad, dtype=torch.float32, device=q.device)
        part_ml = torch.empty(rows * heads * splits, 2, dtype=torch.float32, device=q.device)
    grid = (num_seqs, triton.cdiv(meta.max_query_len, block_q), spec.num_kv_heads * splits)
    _paged_attention_kernel[grid](
        q,
        k_cache,
        v_cache,
        out,
        sinks if sinks is not None else q,
        meta.block_tables,
        meta.query_start_loc,
        meta.seq_lens,
        part_acc,
        part_ml,
        scale,
        q.stride(0),
        q.stride(1),
        k_cache.stride(0),
        k_cache.stride(1),
        k_cache.stride(2),
        out.stride(0),
        out.stride(1),
        meta.block_tables.stride(0),
        GROUP=group,
        PAGE=meta.block_size,
        HEAD_DIM=spec.head_dim,
        HEAD_DIM_PAD=head_dim_pad,
        BLOCK_Q=block_q,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
        SLIDING_WINDOW=spec.sliding_window or 0,
        HAS_SINKS=sinks is not None,
        IEEE=q.dtype == torch.float32,
        SPLITS=splits,
        num_stages=stages,
        num_warps=warps,
    )
    if splits > 1:
        _combine_splits_kernel[(rows, heads)](
            part_acc, part_ml, sinks if sinks is not None else q, out, heads, out.stride(0), out.stride(1),
            HEAD_DIM=spec.head_dim, HEAD_DIM_PAD=head_dim_pad, SPLITS=splits, HAS_SINKS=sinks is not None,
        )  # fmt: skip
    return out


def forward(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    meta: AttentionMetadata,
    spec: AttentionSpec,
    sinks: torch.Tensor | None,
    scale: float,
    kv_stored: bool = False,
) -> torch.Tensor:
    """kv_stored: this step's keys and values are already in the cache (written by the rotary kernel)."""
    assert k_cache.stride() == v_cache.stride(), "K and V caches must share one layout (NHD)"
    if not kv_stored:
        store_kv(k, v, k_cache, v_cache, meta.slot_mapping)
    return paged_attention(q.contiguous(), k_cache, v_cache, meta, spec, sinks, scale)
