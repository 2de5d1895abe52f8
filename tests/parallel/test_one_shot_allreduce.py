"""The one-shot all-reduce kernel's protocol, from one rank's side, in Triton's interpreter: the peer's
half of the work (its row in its buffer, its flag in ours) is done by hand, then rank 0's launch must
raise its flag in the peer's memory, take the peer's, sum in rank order and move to the other half.
(Both sides at once run on two GPUs: `torchrun --nproc-per-node 2 -m atom.bench.allreduce` checks the
results against NCCL's bit for bit.)"""

from __future__ import annotations

import time
from types import SimpleNamespace

import torch

from atom.backends import triton_allreduce
from atom.layers.linear import RMSNorm
from atom.parallel.step_watch import StepWatch

ROWS, DIM, HALF = 3, 40, 1024  # HALF: bytes per data half


def two_ranks() -> tuple[SimpleNamespace, list[torch.Tensor], list[torch.Tensor]]:
    """Rank 0's view of two ranks' buffers: flags [ROWS, 2] int32, then two halves of data."""
    flags = [torch.zeros(ROWS * 2, dtype=torch.int32) for _ in range(2)]
    data = [torch.zeros(2 * HALF // 4, dtype=torch.float32) for _ in range(2)]
    peers = SimpleNamespace(
        rank=0,
        world=2,
        half_bytes=HALF,
        flag_ptrs=torch.tensor([f.data_ptr() for f in flags], dtype=torch.int64),
        data_ptrs=torch.tensor([d.data_ptr() for d in data], dtype=torch.int64),
        epoch=torch.zeros(2, dtype=torch.int32),
    )
    return peers, flags, data


def peer_sends(flags, data, half: int, x: torch.Tensor) -> None:
    """What rank 1 does first: its rows into its buffer's `half`, its flag for each row up in ours."""
    start = half * HALF // 4
    data[1][start : start + x.numel()] = x.flatten()
    flags[0].view(ROWS, 2)[:, 1] = 1


def test_one_shot_all_reduce_sums_in_rank_order_and_alternates_halves():
    peers, flags, data = two_ranks()
    gen = torch.Generator().manual_seed(0)
    for call in range(3):
        mine, theirs = torch.randn(ROWS, DIM, generator=gen), torch.randn(ROWS, DIM, generator=gen)
        peer_sends(flags, data, call % 2, theirs)
        got = triton_allreduce.all_reduce(mine, peers)
        torch.testing.assert_close(got, mine + theirs, rtol=0, atol=0)
        own = data[0][(call % 2) * HALF // 4 :][: ROWS * DIM].view(ROWS, DIM)
        assert torch.equal(own, mine), "our rows are in our own buffer, in this call's half"
        assert flags[1].view(ROWS, 2)[:, 0].tolist() == [1] * ROWS, "our flag is up in the peer's memory"
        assert flags[0].view(ROWS, 2)[:, 1].tolist() == [0] * ROWS, "the peer's flag was taken"
        assert peers.epoch.tolist() == [call + 1, 0], "the next call uses the other half"
        flags[1].zero_()  # the peer takes our flags (else our next launch waits for it)


def test_fused_all_reduce_adds_the_residual_and_norms_as_the_layers_do():
    peers, flags, data = two_ranks()
    norm = RMSNorm(DIM, 1e-5)
    norm.weight.copy_(torch.randn(DIM))
    mine, theirs, residual = torch.randn(ROWS, DIM), torch.randn(ROWS, DIM), torch.randn(ROWS, DIM)
    peer_sends(flags, data, 0, theirs)
    got, got_sum = triton_allreduce.all_reduce(mine, peers, residual, norm.weight, norm.eps)
    want, want_sum = norm.reference(mine + theirs, residual)
    torch.testing.assert_close(got_sum, want_sum, rtol=0, atol=0)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_a_step_that_never_finishes_ends_the_engine_with_the_reason():
    """The liveness check rank 0 keeps on each launched step (our all-reduce kernel has no timeout)."""
    reasons = []
    watch = StepWatch(timeout_s=0.3, on_stuck=reasons.append, poll_s=0.05)
    watch.began(lambda: True)  # a step that finished
    time.sleep(0.5)
    assert reasons == []
    watch.began(lambda: False)  # one whose kernels never complete
    time.sleep(0.8)
    watch.stop()
    assert len(reasons) == 1 and "has not finished after 0.3 s: a rank is stuck" in reasons[0]
