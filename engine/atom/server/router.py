"""Which replica serves a request (data parallelism): the one most likely to hold the prompt's prefix in
its cache, unless it is much busier than the least loaded one, which gets it otherwise.

"Most likely" by the same chained block hashes the cores' block managers compute for prefix caching
(block_manager.chain_hash over full blocks): the router remembers which replica it last sent each block
hash to (bounded, least recently used first out), and follows a new prompt's hashes from its first
block while they point at one live replica. It never asks the cores: their caches may have evicted a
block since, which costs a recomputation, never a wrong answer.
"""

from __future__ import annotations

from collections import OrderedDict

from ..engine.block_manager import chain_hash


class PrefixRouter:
    def __init__(self, block_size: int, max_blocks: int = 1 << 16, slack: int = 4) -> None:
        """slack: in-flight requests a prefix's replica may have beyond the least loaded one's."""
        self.block_size, self.max_blocks, self.slack = block_size, max_blocks, slack
        self.owner: OrderedDict[int, int] = OrderedDict()  # chained block hash -> replica

    def hashes(self, prompt: list[int]) -> list[int]:
        out, prev = [], None
        for start in range(0, len(prompt) - self.block_size + 1, self.block_size):
            prev = chain_hash(prev, tuple(prompt[start : start + self.block_size]))
            out.append(prev)
        return out

    def choose(self, prompt: list[int], loads: dict[int, int]) -> tuple[int, str]:
        """loads: replica index -> in-flight requests, for the replicas that take requests now.
        Returns (replica index, why: "prefix" | "least_loaded")."""
        live = list(loads)
        if not live:
            raise ValueError("no replica can take requests")
        least = min(live, key=lambda r: loads[r])
        hashes = self.hashes(prompt)
        holder = None
        for h in hashes:
            r = self.owner.get(h)
            if r is None or loads.get(r) is None or (holder is not None and r != holder):
                break
            holder = r
        if holder is not None and loads[holder] <= loads[least] + self.slack:
            choice, why = holder, "prefix"
        else:
            choice, why = least, "least_loaded"
        self._remember(hashes, choice)
        return choice, why

    def forget(self, replica: int) -> None:
        """A replica restarted with an empty cache: its blocks are nobody's now."""
        for h in [h for h, r in self.owner.items() if r == replica]:
            del self.owner[h]

    def _remember(self, hashes: list[int], replica: int) -> None:
        for h in hashes:
            self.owner[h] = replica
            self.owner.move_to_end(h)
        while len(self.owner) > self.max_blocks:
            self.owner.popitem(last=False)
