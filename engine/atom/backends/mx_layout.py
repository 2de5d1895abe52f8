"""MXFP4 experts rearranged at load time for the weights-first GEMMs' fragment decode.

The checkpoint layout (rows of bytes along K) makes each thread's decoded values land in the wrong
thread for the MMA: the kernel then writes every decoded tile to shared memory and reads it back. Here the
bytes are regrouped so that one uint32 word holds the 8 values one lane of a 16 x 16 register fragment
(Hopper's wgmma A operand, Ampere's mma.sync) needs: rows g and g + 8, k pairs 2t and 2t + 8 of the
fragment (g = lane // 4, t = lane % 4). Scales keep their layout; gate and up rows are stacked
[gate | up] (gpt-oss interleaves them).
"""

from __future__ import annotations

import torch


def fragment_words(blocks: torch.Tensor) -> torch.Tensor:
    """MXFP4 blocks [E, N, K/32, 16] (N a multiple of 16) -> int32 words [E, N/16, K/16, 32]: word
    (group, f, lane) holds bytes (row g, byte t), (row g + 8, byte t), (row g, byte t + 4), (row g + 8,
    byte t + 4) of the fragment's 8 bytes per row, rows from 16 * group, bytes from 8 * f."""
    e, n = blocks.shape[:2]
    k_bytes = blocks.shape[2] * 16
    if n % 16:
        raise ValueError(f"the fragment layout needs rows in whole groups of 16 (these have {n})")
    b = blocks.reshape(e, n // 16, 2, 8, k_bytes // 8, 2, 4)  # [E, group, qr, g, f, qk, t]
    # [E, group, f, g, t, qk, qr]: byte q = qr + 2 qk; a warp's 32 lanes read 128 contiguous bytes
    words = b.permute(0, 1, 4, 3, 6, 5, 2).contiguous()
    return words.reshape(e, n // 16, k_bytes // 8, 128).view(torch.int32)


def stacked_gate_up(t: torch.Tensor, interleaved: bool) -> torch.Tensor:
    """[E, 2I, ...] rows as [gate | up]: gpt-oss interleaves them (gate 2c, up 2c + 1)."""
    return torch.cat([t[:, 0::2], t[:, 1::2]], dim=1).contiguous() if interleaved else t


def prepare(w: dict[str, torch.Tensor], interleaved: bool) -> dict[str, torch.Tensor]:
    """The fragment-layout copies the weights-first kernels read when a tile asks for them."""
    w13, s13 = stacked_gate_up(w["w13_blocks"], interleaved), stacked_gate_up(w["w13_scales"], interleaved)
    return {
        "w13_fragments": fragment_words(w13),
        "w13_fragment_scales": s13,
        "w2_fragments": fragment_words(w["w2_blocks"]),
    }
