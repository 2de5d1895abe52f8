"""Continuous batching: decode and (chunked) prefill share one token budget per step.

Running sequences go first, in arrival order; when KV blocks run out the newest running sequence is
preempted (its blocks freed, recomputed later). Waiting sequences are admitted while budget, seats and
blocks allow; a long prompt is split into chunks across steps.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from .block_manager import BlockManager
from .sequence import Sequence, Status


@dataclass
class ScheduledBatch:
    seqs: list[Sequence]
    num_tokens: list[int]  # tokens each sequence computes this step
    samples: list[bool]  # whether it reaches its last token this step (its row of logits samples)

    def add(self, seq: Sequence, n: int) -> None:
        self.seqs.append(seq)
        self.num_tokens.append(n)
        self.samples.append(seq.num_computed_tokens + n == seq.num_tokens)

    @property
    def total_tokens(self) -> int:
        return sum(self.num_tokens)

    def __bool__(self) -> bool:
        return bool(self.seqs)


class Scheduler:
    def __init__(self, block_manager: BlockManager, max_num_seqs: int, max_num_batched_tokens: int) -> None:
        self.block_manager = block_manager
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.num_preemptions = 0

    def add(self, seq: Sequence) -> None:
        seq.status = Status.WAITING
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> ScheduledBatch:
        batch = ScheduledBatch([], [], [])
        budget = self.max_num_batched_tokens
        preempted = False
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            n = min(seq.num_uncomputed, budget)
            while not self.block_manager.can_append(seq, n):
                victim = self.running.pop()
                self._preempt(victim)
                preempted = True
                if victim is seq:
                    break
            else:
                self.block_manager.append_slots(seq, n)
                batch.add(seq, n)
                budget -= n
                i += 1
        while self.waiting and budget > 0 and len(self.running) < self.max_num_seqs and not preempted:
            seq = self.waiting[0]
            self.block_manager.allocate_prefix(seq)
            n = min(seq.num_uncomputed, budget)
            if not self.block_manager.can_append(seq, n):
                self.block_manager.deallocate(seq)
                break
            self.waiting.popleft()
            self.block_manager.append_slots(seq, n)
            seq.status = Status.RUNNING
            self.running.append(seq)
            batch.add(seq, n)
            budget -= n
        return batch

    def _preempt(self, seq: Sequence) -> None:
        self.block_manager.deallocate(seq)
        seq.status = Status.WAITING
        seq.num_preemptions += 1
        self.num_preemptions += 1
        self.waiting.appendleft(seq)

    def complete_step(self, batch: ScheduledBatch) -> list[Sequence]:
        """Advance computed counts; return the sequences whose last token was computed (they sample),
        one per row of the step's logits. A sequence that finished while the step ran (core.py's
        lookahead) is among them, its blocks already gone."""
        for seq, n in zip(batch.seqs, batch.num_tokens, strict=True):
            if not seq.is_finished:
                seq.num_computed_tokens += n
                self.block_manager.commit(seq)
        return [seq for seq, samples in zip(batch.seqs, batch.samples, strict=True) if samples]

    def finish(self, seq: Sequence, reason: str) -> None:
        """Finish or abort a sequence wherever it is, freeing its blocks."""
        if seq.status == Status.FINISHED:
            return
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
        self.block_manager.deallocate(seq)
        seq.status = Status.FINISHED
        seq.finish_reason = reason
