"""Property tests: random admits, appends, finishes, aborts and preemptions never leak or miscount blocks."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from atom.engine.block_manager import BlockManager
from atom.engine.scheduler import Scheduler
from atom.engine.sequence import Sequence, Status
from atom.sampling_params import SamplingParams


def check_invariants(bm: BlockManager, seqs: list[Sequence]) -> None:
    holders = Counter(b for s in seqs if not s.is_finished for b in s.block_table)
    for block in bm.blocks:
        assert block.ref_count == holders[block.block_id], f"block {block.block_id} refcount"
        assert (block.block_id in bm.free) == (block.ref_count == 0)
    for h, block_id in bm.hash_to_block.items():
        assert bm.blocks[block_id].hash == h


prompt = st.lists(st.integers(0, 5), min_size=1, max_size=40)  # small alphabet: many shared prefixes
workload = st.lists(
    st.tuples(st.sampled_from(["admit", "step", "step", "step", "abort"]), prompt, st.integers(1, 12)),
    min_size=1,
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(
    workload=workload,
    num_blocks=st.integers(12, 40),
    block_size=st.sampled_from([1, 2, 4]),
    budget=st.integers(4, 64),
    prefix=st.booleans(),
)
def test_random_workloads_finish_without_leaks(workload, num_blocks, block_size, budget, prefix):
    bm = BlockManager(num_blocks, block_size, enable_prefix_caching=prefix)
    sched = Scheduler(bm, max_num_seqs=4, max_num_batched_tokens=budget)
    seqs: list[Sequence] = []

    def step() -> None:
        batch = sched.schedule()
        for seq in sched.complete_step(batch):
            seq.token_ids.append(seq.num_tokens % 6)  # a deterministic "sampled" token
            if seq.num_output_tokens >= seq.max_tokens:
                sched.finish(seq, "length")
        check_invariants(bm, seqs)

    for action, tokens, max_tokens in workload:
        if action == "admit" and len(tokens) + max_tokens <= block_size * num_blocks:
            seq = Sequence(list(tokens), SamplingParams(max_tokens=max_tokens))
            seq.max_tokens = max_tokens
            seqs.append(seq)
            sched.add(seq)
        elif action == "abort" and seqs:
            victim = seqs[len(tokens) % len(seqs)]
            sched.finish(victim, "abort")
        else:
            step()
    for _ in range(10_000):
        if not sched.has_unfinished():
            break
        step()
    assert not sched.has_unfinished(), "some admitted request never finished"
    assert all(s.status == Status.FINISHED for s in seqs)
    assert bm.num_free == num_blocks, "blocks leaked"
    assert all(b.ref_count == 0 for b in bm.blocks)


def test_prefix_hit_requires_identical_tokens():
    bm = BlockManager(8, 2)
    a = Sequence([1, 2, 3, 4, 5], SamplingParams())
    bm.allocate_prefix(a)
    bm.append_slots(a, 5)
    a.num_computed_tokens = 5
    bm.commit(a)
    b = Sequence([1, 2, 3, 9, 5], SamplingParams())
    bm.allocate_prefix(b)
    assert b.block_table == a.block_table[:1] and b.num_computed_tokens == 2
    assert bm.blocks[a.block_table[0]].ref_count == 2


def test_preemption_recomputes_when_blocks_run_out():
    bm = BlockManager(4, 2, enable_prefix_caching=False)
    sched = Scheduler(bm, max_num_seqs=4, max_num_batched_tokens=64)
    seqs = [Sequence([1, 2, 3], SamplingParams()) for _ in range(2)]
    for s in seqs:
        s.max_tokens = 4
        sched.add(s)
    while sched.has_unfinished():
        for s in sched.complete_step(sched.schedule()):
            s.token_ids.append(0)
            if s.num_output_tokens >= s.max_tokens:
                sched.finish(s, "length")
    assert sched.num_preemptions > 0
    assert all(s.num_output_tokens == 4 for s in seqs) and bm.num_free == 4


@given(st.lists(st.lists(st.integers(0, 10_000), max_size=9), min_size=1, max_size=12))
def test_padded_block_tables_match_naive_padding(tables):
    from atom.engine.block_manager import padded_block_tables

    width = max(map(len, tables))
    expected = [t + [0] * (width - len(t)) for t in tables]
    assert padded_block_tables(tables).tolist() == expected
