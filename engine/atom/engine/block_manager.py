"""Fixed-size KV blocks with reference counts and prefix caching by chained block hashes.

A block's hash is registered only once its tokens have been computed (commit), so a hit never reads
KV that is still being written. Freed blocks keep their hash and can be revived until reused (LRU).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from itertools import chain

import numpy as np
import torch

from .sequence import Sequence

Tensorlike = np.ndarray | torch.Tensor


@dataclass
class Block:
    block_id: int
    ref_count: int = 0
    hash: int | None = None
    token_ids: tuple[int, ...] | None = None


def chain_hash(prev: int | None, tokens: tuple[int, ...]) -> int:
    return hash((prev, tokens))


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True) -> None:
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.blocks = [Block(i) for i in range(num_blocks)]
        self.free: OrderedDict[int, None] = OrderedDict((i, None) for i in range(num_blocks))
        self.hash_to_block: dict[int, int] = {}
        self.hits = 0
        self.queries = 0

    @property
    def num_free(self) -> int:
        return len(self.free)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def usage(self) -> float:
        return 1.0 - self.num_free / self.num_blocks

    def blocks_needed(self, seq: Sequence, num_new_tokens: int) -> int:
        total = -(-(seq.num_computed_tokens + num_new_tokens) // self.block_size)
        return max(0, total - len(seq.block_table))

    def can_append(self, seq: Sequence, num_new_tokens: int) -> bool:
        return self.blocks_needed(seq, num_new_tokens) <= self.num_free

    def allocate_prefix(self, seq: Sequence) -> None:
        """Reuse cached blocks for the longest full-block prefix of the sequence's tokens."""
        assert not seq.block_table, "allocate_prefix on a sequence that holds blocks"
        if not self.enable_prefix_caching:
            return
        bs, prev = self.block_size, None
        for i in range(seq.num_tokens // bs):
            tokens = tuple(seq.token_ids[i * bs : (i + 1) * bs])
            h = chain_hash(prev, tokens)
            self.queries += 1
            block_id = self.hash_to_block.get(h)
            if block_id is None or self.blocks[block_id].token_ids != tokens:
                break
            self.hits += 1
            self._take(block_id)
            seq.block_table.append(block_id)
            seq.block_hashes.append(h)
            prev = h
        cached = len(seq.block_table) * bs
        # The last token is always recomputed: its logits are what we sample from.
        seq.num_computed_tokens = min(cached, seq.num_tokens - 1)
        seq.num_cached_tokens = seq.num_computed_tokens

    def append_slots(self, seq: Sequence, num_new_tokens: int) -> None:
        for _ in range(self.blocks_needed(seq, num_new_tokens)):
            seq.block_table.append(self._allocate_fresh())

    def commit(self, seq: Sequence) -> None:
        """Register the hashes of blocks whose tokens are now all computed."""
        if not self.enable_prefix_caching:
            return
        bs = self.block_size
        for i in range(len(seq.block_hashes), seq.num_computed_tokens // bs):
            tokens = tuple(seq.token_ids[i * bs : (i + 1) * bs])
            h = chain_hash(seq.block_hashes[-1] if seq.block_hashes else None, tokens)
            seq.block_hashes.append(h)
            block = self.blocks[seq.block_table[i]]
            if h not in self.hash_to_block and block.hash is None:
                block.hash, block.token_ids = h, tokens
                self.hash_to_block[h] = block.block_id

    def deallocate(self, seq: Sequence) -> None:
        for block_id in reversed(seq.block_table):
            block = self.blocks[block_id]
            block.ref_count -= 1
            assert block.ref_count >= 0, f"block {block_id} freed twice"
            if block.ref_count == 0:
                self.free[block_id] = None  # most recently freed are evicted last
        seq.block_table.clear()
        seq.block_hashes.clear()
        seq.num_computed_tokens = 0

    def hit_rate(self) -> float:
        return self.hits / self.queries if self.queries else 0.0

    def _take(self, block_id: int) -> None:
        block = self.blocks[block_id]
        if block.ref_count == 0:
            del self.free[block_id]
        block.ref_count += 1

    def _allocate_fresh(self) -> int:
        block_id, _ = self.free.popitem(last=False)
        block = self.blocks[block_id]
        if block.hash is not None:
            if self.hash_to_block.get(block.hash) == block_id:
                del self.hash_to_block[block.hash]
            block.hash, block.token_ids = None, None
        block.ref_count = 1
        return block_id


def padded_block_tables(tables: list[list[int]], width: int | None = None) -> np.ndarray:
    """[len(tables), width] int64 block ids, zero-padded; one vectorised scatter, no per-row Python work."""
    lengths = np.fromiter((len(t) for t in tables), dtype=np.int64, count=len(tables))
    flat = np.fromiter(chain.from_iterable(tables), dtype=np.int64, count=int(lengths.sum()))
    padded = np.zeros((len(tables), width or int(lengths.max(initial=0))), dtype=np.int64)
    rows = np.repeat(np.arange(len(tables)), lengths)
    cols = np.arange(flat.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    padded[rows, cols] = flat
    return padded


def cache_slots(tables: Tensorlike, rows: Tensorlike, positions: Tensorlike, block_size: int) -> Tensorlike:
    """The KV-cache slot of each token (row `rows[i]` of the block tables, at `positions[i]`): its block's
    first slot plus the offset. numpy arrays or torch tensors alike, for the eager and CUDA-graph paths."""
    return tables[rows, positions // block_size] * block_size + positions % block_size
