"""Turn the last-position logits of each ready sequence into next tokens (and logprobs).

The sampler returns what it drew; it never writes into a Sequence."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .outputs import TokenLogprob
from .sequence import Sequence


@dataclass
class SamplerOutput:
    tokens: list[int]
    logprobs: list[TokenLogprob | None]  # one per sequence; None where none were asked for


def on_device(values, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Host values (a list or a CPU tensor) on `device`, without waiting for the device: a plain copy
    from pageable memory synchronizes the stream, so it would wait for the step just launched (core.py's
    lookahead). Pinned, the copy is queued like a kernel."""
    t = values if isinstance(values, torch.Tensor) else torch.tensor(values, dtype=dtype)
    if device.type != "cuda":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def apply_penalties(logits: torch.Tensor, seqs: list[Sequence]) -> torch.Tensor:
    for row, seq in enumerate(seqs):
        p = seq.params
        if p.repetition_penalty != 1.0:
            seen = on_device(sorted(set(seq.token_ids)), logits.device)
            values = logits[row, seen]
            logits[row, seen] = torch.where(
                values > 0, values / p.repetition_penalty, values * p.repetition_penalty
            )
        if (p.presence_penalty or p.frequency_penalty) and seq.num_output_tokens:
            out = on_device(seq.output_token_ids, logits.device)
            counts = torch.zeros(logits.shape[1], device=logits.device).scatter_add_(
                0, out, torch.ones_like(out, dtype=torch.float32)
            )
            logits[row] -= p.frequency_penalty * counts + p.presence_penalty * (counts > 0).float()
    return logits


def filter_logits(logits: torch.Tensor, seqs: list[Sequence]) -> torch.Tensor:
    """Temperature, top-k, top-p and min-p, vectorised over the batch."""
    device = logits.device
    temperature = on_device([max(s.params.temperature, 1e-5) for s in seqs], device)
    logits = logits / temperature[:, None]
    vocab = logits.shape[1]
    # top_k beyond the vocabulary keeps every token, and must not overflow an int64 tensor.
    top_k = on_device([min(s.params.top_k, vocab) if s.params.top_k > 0 else vocab for s in seqs], device)
    top_p = on_device([s.params.top_p for s in seqs], device)
    min_p = on_device([s.params.min_p for s in seqs], device)
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    ranks = torch.arange(logits.shape[1], device=device)[None, :]
    remove = ranks >= top_k[:, None]
    probs = sorted_logits.softmax(dim=-1)
    cumulative = probs.cumsum(dim=-1) - probs  # mass strictly before each token
    remove |= cumulative >= top_p[:, None]
    remove |= probs < min_p[:, None] * probs[:, :1]
    remove[:, 0] = False  # the most likely token always survives
    sorted_logits = sorted_logits.masked_fill(remove, float("-inf"))
    return torch.empty_like(logits).scatter_(1, order, sorted_logits)


def apply_bias(
    logits: torch.Tensor, seqs: list[Sequence], suppressed: list[list[int]] | None
) -> torch.Tensor:
    """logit_bias added and suppressed tokens set to -inf, for the whole batch in two scatters (the
    host builds the sparse (row, token, value) lists; no loop over the vocabulary)."""
    rows, cols, values = [], [], []
    for row, seq in enumerate(seqs):
        for token, bias in seq.params.logit_bias.items():
            rows.append(row)
            cols.append(token)
            values.append(bias)
    if rows:
        index = (on_device(rows, logits.device), on_device(cols, logits.device))
        logits.index_put_(index, on_device(values, logits.device, logits.dtype), accumulate=True)
    banned = [(row, token) for row, tokens in enumerate(suppressed or ()) for token in tokens]
    if banned:
        index = on_device(banned, logits.device).T
        logits[index[0], index[1]] = float("-inf")
    return logits


@dataclass
class Drawn:
    """What sample_on_device drew. The tokens stay on the device for the next step (core.py's
    lookahead); their copies to the host are queued at once, before any later step, so reading them
    waits for this step only."""

    tokens: torch.Tensor  # [rows] int64, on the logits' device
    host: list[torch.Tensor]  # tokens, then (where asked) chosen logprobs, top ids, top values
    logprob_rows: list[int]  # the rows that asked for logprobs
    copied: torch.cuda.Event | None  # the host copies done (None on the CPU)

    @classmethod
    def copying(cls, tokens: torch.Tensor, logprobs: tuple | None) -> Drawn:
        rows, *tensors = logprobs or ([],)
        host = [_to_host(t) for t in (tokens, *tensors)]
        copied = None
        if tokens.is_cuda:
            copied = torch.cuda.Event()
            copied.record()
        return cls(tokens, host, rows, copied)

    def read(self, seqs: list[Sequence]) -> SamplerOutput:
        """The tokens (and logprobs) on the host: waits for the step that drew them."""
        if self.copied is not None:
            self.copied.synchronize()
        tokens, *rest = (t.tolist() for t in self.host)
        found: list[TokenLogprob | None] = [None] * len(seqs)
        if rest:
            chosen, top_ids, top_values = rest
            for row, i in enumerate(self.logprob_rows):
                n = seqs[i].params.logprobs
                found[i] = TokenLogprob(
                    tokens[i], chosen[row], list(zip(top_ids[row][:n], top_values[row][:n], strict=True))
                )
        return SamplerOutput(tokens, found)


def _to_host(t: torch.Tensor) -> torch.Tensor:
    if not t.is_cuda:
        return t
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    return host.copy_(t, non_blocking=True)


def sample(
    logits: torch.Tensor,
    seqs: list[Sequence],
    suppressed: list[list[int]] | None = None,
    allowed: torch.Tensor | None = None,
) -> SamplerOutput:
    """sample_on_device, read back at once."""
    return sample_on_device(logits, seqs, suppressed, allowed).read(seqs)


def sample_on_device(
    logits: torch.Tensor,
    seqs: list[Sequence],
    suppressed: list[list[int]] | None = None,
    allowed: torch.Tensor | None = None,
) -> Drawn:
    """logits: [len(seqs), vocab] float32, left unchanged. One token id (and logprobs) per sequence.
    suppressed: per sequence, tokens it may not sample now (min_tokens). Logprobs are the model's own
    (before penalties, biases, suppression and grammars). allowed: [len(seqs), vocab] bool, the tokens
    each sequence's grammar admits now (structured outputs).

    Which rows are greedy or penalised is known on the host, so nothing here waits for the device;
    greedy rows skip the filters and the noise entirely."""
    raw = logits
    if any(s.params.logit_bias for s in seqs) or any(suppressed or ()):
        logits = apply_bias(logits.clone(), seqs, suppressed)
    if any(s.params.penalised for s in seqs):
        logits = apply_penalties(logits if logits is not raw else logits.clone(), seqs)
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    tokens = logits.argmax(dim=-1)
    drawn = [i for i, s in enumerate(seqs) if not s.params.greedy]
    if drawn:
        rows = on_device(drawn, logits.device)
        probs = filter_logits(logits[rows], [seqs[i] for i in drawn]).softmax(dim=-1)
        # Exponential race == multinomial; one batched draw, seeded rows from their own generators.
        noise = torch.empty_like(probs).exponential_()
        for row, i in enumerate(drawn):
            if seqs[i].generator is not None:
                noise[row] = on_device(
                    torch.empty(probs.shape[1]).exponential_(generator=seqs[i].generator), probs.device
                )
        tokens[rows] = (probs / noise).argmax(dim=-1)
    return Drawn.copying(tokens, _logprobs(raw, seqs, tokens))


def _logprobs(logits: torch.Tensor, seqs: list[Sequence], tokens: torch.Tensor):
    """The chosen tokens' logprobs and the top ones, on the device, for the rows that asked."""
    wanted = [i for i, s in enumerate(seqs) if s.params.logprobs is not None]
    if not wanted:
        return None
    index = on_device(wanted, logits.device)
    logprobs = logits.index_select(0, index).float().log_softmax(dim=-1)
    k = max(seqs[i].params.logprobs for i in wanted)
    top_values, top_ids = logprobs.topk(max(k, 1), dim=-1)
    chosen = logprobs.gather(1, tokens[index][:, None])[:, 0]
    return wanted, chosen, top_ids, top_values
