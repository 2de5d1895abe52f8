"""The sampler on a mixed batch: greedy, seeded, filtered and penalised rows side by side."""

from __future__ import annotations

import contextlib

import torch

from atom import SamplingParams
from atom.engine.sampler import sample, sample_on_device
from atom.engine.sequence import Sequence

VOCAB = 50
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def seq(**params) -> Sequence:
    return Sequence(token_ids=[1, 2, 3, 7, 7], params=SamplingParams(**params), num_prompt_tokens=3)


def logits_for(n: int) -> torch.Tensor:
    return torch.randn(n, VOCAB, generator=torch.Generator().manual_seed(1)) * 3


def test_mixed_batch_each_row_by_its_own_rules():
    batch = [
        seq(temperature=0),
        seq(temperature=1.0, seed=5),
        seq(temperature=1.0, top_k=1),  # top_k 1 is greedy whatever the temperature
        seq(temperature=0, repetition_penalty=5.0),
        seq(temperature=0.7, top_k=3, seed=9),
    ]
    logits = logits_for(len(batch))
    before = logits.clone()
    tokens = sample(logits, batch).tokens
    assert torch.equal(logits, before), "the caller's logits were modified"
    assert tokens[0] == int(logits[0].argmax()) and tokens[2] == int(logits[2].argmax())
    penalised = logits[3].clone()
    seen = torch.tensor([1, 2, 3, 7])
    penalised[seen] = torch.where(penalised[seen] > 0, penalised[seen] / 5, penalised[seen] * 5)
    assert tokens[3] == int(penalised.argmax())
    assert tokens[4] in logits[4].topk(3).indices.tolist()
    # a seeded row draws the same token alone as in the mixed batch
    alone = sample(logits[[1]].clone(), [seq(temperature=1.0, seed=5)]).tokens
    assert alone == [tokens[1]]


def test_sampling_follows_the_distribution():
    logits = torch.log(torch.tensor([[0.7, 0.2, 0.1] + [1e-9] * (VOCAB - 3)]))
    draws = [sample(logits, [seq(temperature=1.0)]).tokens[0] for _ in range(2000)]
    share = [draws.count(t) / len(draws) for t in range(3)]
    assert abs(share[0] - 0.7) < 0.05 and abs(share[1] - 0.2) < 0.05 and abs(share[2] - 0.1) < 0.04
    assert set(draws) <= {0, 1, 2}


def test_logprobs_are_returned_not_written_into_sequences():
    batch = [seq(temperature=0, logprobs=2), seq(temperature=0), seq(temperature=1.0, seed=3, logprobs=0)]
    logits = logits_for(len(batch))
    out = sample(logits, batch)
    assert out.logprobs[1] is None
    first = out.logprobs[0]
    expected = logits[0].log_softmax(-1)
    assert first.token_id == out.tokens[0] and abs(first.logprob - float(expected[out.tokens[0]])) < 1e-6
    assert [t for t, _ in first.top] == expected.topk(2).indices.tolist()
    assert out.logprobs[2].top == [] and out.logprobs[2].token_id == out.tokens[2]
    assert not hasattr(batch[0], "logprobs")


def test_drawing_queues_work_and_never_waits_for_the_device():
    """Every kind of row (drawn, seeded, filtered, penalised, biased, suppressed, with logprobs) is drawn
    without a device sync: the engine launches the next step before reading these tokens. On a GPU,
    torch's sync debug mode turns any sync into an error; everywhere the tokens read back later are the
    ones sample() reads at once."""
    batch = [
        seq(temperature=0, logprobs=2),
        seq(temperature=1.0, seed=5, top_p=0.9, min_p=0.01),
        seq(temperature=0.7, top_k=3, seed=9, logprobs=1),
        seq(temperature=0, repetition_penalty=5.0, presence_penalty=0.5, frequency_penalty=0.2),
        seq(temperature=0, logit_bias={4: 30.0}),
    ]
    logits = logits_for(len(batch)).to(DEVICE)
    suppressed = [[], [], [], [7], []]
    guard = torch.cuda.set_sync_debug_mode if DEVICE == "cuda" else None
    with contextlib.ExitStack() as stack:
        if guard:
            guard("error")
            stack.callback(guard, "default")
        drawn = sample_on_device(logits, batch, suppressed)
    out = drawn.read(batch)
    again = sample(logits, [seq(**b.params.__dict__) for b in batch], suppressed)
    assert out.tokens == again.tokens and out.tokens[4] == 4 and out.tokens[3] != 7
    assert out.logprobs[0].token_id == out.tokens[0] and len(out.logprobs[2].top) == 1
    assert (drawn.copied is not None) == (DEVICE == "cuda")
