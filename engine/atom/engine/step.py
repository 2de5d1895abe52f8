"""StepInput: what every rank needs to run one step of the model, as plain data.

Rank 0 builds it from the scheduler's batch; under tensor parallelism it is also what the workers
receive (they hold no Sequence, no scheduler, no block manager)."""

from __future__ import annotations

import msgspec
import torch

from .scheduler import ScheduledBatch


class StepInput(msgspec.Struct, array_like=True):
    # the tokens each sequence computes this step, concatenated; -(1 + i): the token the previous step
    # drew for its row i, still on the device (see take_previous)
    token_ids: list[int]
    starts: list[int]  # per sequence: tokens already in its KV cache
    query_lens: list[int]  # per sequence: tokens it computes this step
    wants_logits: list[bool]  # per sequence: this step reaches its last token (it samples)
    block_tables: list[list[int]]
    previous_rows: int = 0  # tokens the previous step drew that the markers index (broadcast by rank 0)

    @classmethod
    def from_batch(cls, batch: ScheduledBatch, previous_rows: int = 0) -> StepInput:
        token_ids: list[int] = []
        starts = []
        for seq, n in zip(batch.seqs, batch.num_tokens, strict=True):
            start = seq.num_computed_tokens
            token_ids.extend(seq.token_ids[start : start + n])
            starts.append(start)
        return cls(
            token_ids,
            starts,
            list(batch.num_tokens),
            list(batch.samples),
            [s.block_table for s in batch.seqs],
            previous_rows,
        )

    @property
    def is_decode(self) -> bool:
        """One token per sequence, each of which samples (what the CUDA graphs replay)."""
        return all(n == 1 for n in self.query_lens) and all(self.wants_logits)


step_encoder = msgspec.msgpack.Encoder()
step_decoder = msgspec.msgpack.Decoder(StepInput | None)


def take_previous(ids: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
    """ids [rows] with the markers -(1 + i) replaced by previous[i], on the device: the tokens of a step
    launched before the host read what the step before it drew (core.py's lookahead). Plain ids pass."""
    return torch.where(ids < 0, previous[(-1 - ids).clamp(min=0)], ids)
