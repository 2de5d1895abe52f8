"""Multi-head latent attention over the paged latent cache, in Triton (prefill, chunked prefill and decode
in one varlen kernel, like our paged attention).

Absorbed form: the query arrives with each head's key up-projection folded in ([kv_rank] latent part and
[rope] rotary part); every head reads the same cached latent, which is the key (latent . q_latent +
k_rope . q_rope) and, its first kv_rank dims, the value. The two parts are two dots of their own widths
(512 and 64 at DeepSeek-V3's sizes), never one padded 576-wide head: padding that to 1024 spilled
hundreds of registers on gfx942/gfx950 and overflowed gfx942's LDS. Rows of a program are query tokens x
heads, so decode fills a tensor-core tile from the heads alone. The value up-projection runs after, as one
batched GEMM.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ..layers.context import AttentionMetadata
from .torch_mla import absorbed_query, store_latent
from .triton_common import device_arch, dot
from .triton_mla_support import SUPPORT  # noqa: F401  (what this backend declares)


@triton.jit
def _mla_kernel(
    q_ptr,  # [T, H, RANK + ROPE] absorbed queries
    cache_ptr,  # [blocks, PAGE, RANK + ROPE]
    out_ptr,  # [T, H, RANK] softmax-weighted latents
    block_tables_ptr,
    query_start_loc_ptr,
    seq_lens_ptr,
    scale,
    num_heads,
    stride_qt,
    stride_qh,
    stride_cb,
    stride_cs,
    stride_ot,
    stride_oh,
    stride_bt,
    RANK: tl.constexpr,
    ROPE: tl.constexpr,
    RANK_PAD: tl.constexpr,
    ROPE_PAD: tl.constexpr,
    PAGE: tl.constexpr,
    HEADS_PER_PROGRAM: tl.constexpr,
    VALUE_CHUNK: tl.constexpr,
    SCORE_K: tl.constexpr,  # latent dims per slice of the score dot  # latent dims of the output one program accumulates (a divisor of RANK_PAD)
    BLOCK_Q: tl.constexpr,  # query tokens per program
    BLOCK_M: tl.constexpr,  # power of two >= BLOCK_Q * HEADS_PER_PROGRAM
    BLOCK_N: tl.constexpr,  # keys per iteration
    IEEE: tl.constexpr,
):
    seq = tl.program_id(0)
    q_tile = tl.program_id(1)
    head_block = tl.program_id(2) // (RANK_PAD // VALUE_CHUNK)
    chunk = tl.program_id(2) % (RANK_PAD // VALUE_CHUNK)
    q_start = tl.load(query_start_loc_ptr + seq)
    q_len = tl.load(query_start_loc_ptr + seq + 1) - q_start
    if q_tile * BLOCK_Q >= q_len:
        return
    first_pos = tl.load(seq_lens_ptr + seq) - q_len

    rows = tl.arange(0, BLOCK_M)
    q_tok = q_tile * BLOCK_Q + rows // HEADS_PER_PROGRAM
    head = head_block * HEADS_PER_PROGRAM + rows % HEADS_PER_PROGRAM
    row_ok = (rows < BLOCK_Q * HEADS_PER_PROGRAM) & (q_tok < q_len) & (head < num_heads)
    q_pos = first_pos + q_tok
    rot = tl.arange(0, ROPE_PAD)
    val = chunk * VALUE_CHUNK + tl.arange(0, VALUE_CHUNK)
    rot_ok, val_ok = rot < ROPE, val < RANK
    q_row = q_ptr + (q_start + q_tok)[:, None] * stride_qt + head[:, None] * stride_qh
    q_rot = tl.load(q_row + RANK + rot[None, :], mask=row_ok[:, None] & rot_ok[None, :], other=0.0)
    part = tl.arange(0, SCORE_K)

    m_i = tl.full([BLOCK_M], -1.0e30, tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, VALUE_CHUNK], tl.float32)
    last_pos = first_pos + tl.minimum(q_len, (q_tile + 1) * BLOCK_Q) - 1  # causal: no key after it
    for start in range(0, last_pos + 1, BLOCK_N):
        k_pos = start + tl.arange(0, BLOCK_N)
        k_ok = k_pos <= last_pos
        block = tl.load(block_tables_ptr + seq * stride_bt + k_pos // PAGE, mask=k_ok, other=0)
        slot = cache_ptr + block[:, None] * stride_cb + (k_pos % PAGE)[:, None] * stride_cs
        k_rot = tl.load(slot + RANK + rot[None, :], mask=k_ok[:, None] & rot_ok[None, :], other=0.0)
        s = dot(q_rot, tl.trans(k_rot), tl.zeros([BLOCK_M, BLOCK_N], tl.float32), IEEE)
        for d in tl.static_range(0, RANK_PAD, SCORE_K):  # the latent dot in slices: fewer live registers
            dims = d + part
            q_part = tl.load(q_row + dims[None, :], mask=row_ok[:, None] & (dims < RANK)[None, :], other=0.0)
            c = tl.load(slot + dims[None, :], mask=k_ok[:, None] & (dims < RANK)[None, :], other=0.0)
            s = dot(q_part, tl.trans(c), s, IEEE)
        s = s * scale
        s = tl.where((k_pos[None, :] <= q_pos[:, None]) & k_ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        p = tl.exp(s - m_new[:, None])
        alpha = tl.exp(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        c_val = tl.load(slot + val[None, :], mask=k_ok[:, None] & val_ok[None, :], other=0.0)
        acc = dot(p.to(c_val.dtype), c_val, acc * alpha[:, None], IEEE)
        m_i = m_new

    out = acc / l_i[:, None]
    tl.store(
        out_ptr + (q_start + q_tok)[:, None] * stride_ot + head[:, None] * stride_oh + val[None, :],
        out.to(out_ptr.dtype.element_ty),
        mask=row_ok[:, None] & val_ok[None, :],
    )


# (keys per iteration, heads per program, output latent dims per program, warps) per arch, and the latent
# dims per slice of the score dot. Compiled for gfx942/gfx950 in CI (amd_compile.py) at DeepSeek-V3's
# sizes: whole-width dots (512) spilled 40-500 registers at every tile tried; 64-dim score slices with
# these value chunks spill none. None of these has run on a GPU yet.
SCORE_K = 64
TILES = {
    "gfx942": (16, 16, 128, 8),
    "gfx950": (16, 16, 64, 8),
    "sm90": (16, 16, 128, 8),
    "default": (16, 16, 128, 4),
}


def _tiles(max_query_len: int, heads: int, arch: str) -> tuple[int, int, int, int, int, int]:
    """(BLOCK_N, heads per program, value chunk, BLOCK_Q, BLOCK_M, warps): decode packs heads into rows;
    prefill takes several query tokens per program too."""
    block_n, per_program, chunk, warps = TILES.get(arch, TILES["default"])
    per_program = min(per_program, triton.next_power_of_2(heads))
    block_m = max(16, per_program)
    if max_query_len > 1:
        block_m = max(32, block_m)
    return block_n, per_program, chunk, max(1, block_m // per_program), block_m, warps


def paged_mla(
    q: torch.Tensor, cache: torch.Tensor, meta: AttentionMetadata, rank: int, scale: float
) -> torch.Tensor:
    """q [T, H, rank + rope] (absorbed) against the paged latent cache -> [T, H, rank]."""
    t, heads, width = q.shape
    out = torch.zeros(t, heads, rank, dtype=q.dtype, device=q.device)  # padded graph rows stay finite
    block_n, per_program, chunk, block_q, block_m, warps = _tiles(
        meta.max_query_len, heads, device_arch(q.device)
    )
    rank_pad = max(16, triton.next_power_of_2(rank))
    chunk = min(chunk, rank_pad)
    programs = triton.cdiv(heads, per_program) * (rank_pad // chunk)
    grid = (meta.block_tables.shape[0], triton.cdiv(meta.max_query_len, block_q), programs)
    rope = width - rank
    _mla_kernel[grid](
        q, cache, out, meta.block_tables, meta.query_start_loc, meta.seq_lens, scale, heads,
        q.stride(0), q.stride(1), cache.stride(0), cache.stride(1), out.stride(0), out.stride(1),
        meta.block_tables.stride(0),
        RANK=rank, ROPE=rope, RANK_PAD=rank_pad, VALUE_CHUNK=chunk, SCORE_K=min(SCORE_K, rank_pad),
        ROPE_PAD=max(16, triton.next_power_of_2(rope)), PAGE=meta.block_size, HEADS_PER_PROGRAM=per_program,
        BLOCK_Q=block_q, BLOCK_M=block_m, BLOCK_N=block_n, IEEE=q.dtype == torch.float32, num_warps=warps,
    )  # fmt: skip
    return out


def forward(
    q_nope: torch.Tensor,
    q_rope: torch.Tensor,
    latent: torch.Tensor,
    k_rope: torch.Tensor,
    cache: torch.Tensor,
    meta: AttentionMetadata,
    layer,
    scale: float,
) -> torch.Tensor:
    """-> [T, H, v_head_dim] (the same contract as torch_mla.forward)."""
    store_latent(latent, k_rope, cache, meta.slot_mapping)
    w_uk, w_uv = layer.up_projections()
    q = absorbed_query(q_nope, q_rope, w_uk).to(cache.dtype).contiguous()
    mixed = paged_mla(q, cache, meta, layer.kv_rank, scale)
    return torch.einsum("thr,hvr->thv", mixed.float(), w_uv.float()).to(q_nope.dtype)
