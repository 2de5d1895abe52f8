"""What the engine core hands out after a step: plain data, no text (detokenizing is the output
processor's job, in whichever process owns the client)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

FinishReason = Literal["stop", "length", "abort"]


@dataclass
class TokenLogprob:
    """The sampled token's logprob and the top alternatives, as token ids (text comes later)."""

    token_id: int
    logprob: float
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass
class CoreOutput:
    """One request's news from one step."""

    request_id: str
    new_token_ids: list[int]
    logprobs: list[TokenLogprob] | None = None
    finish_reason: FinishReason | None = None
    num_cached_tokens: int = 0
    error: str | None = None  # the request could not be added (it never ran)


@dataclass
class EngineStats:
    """The core's state now (gauges) and since it started (counters: where the host's time goes)."""

    running: int = 0
    waiting: int = 0
    kv_usage: float = 0.0
    free_blocks: int = 0
    prefix_hit_rate: float = 0.0
    steps: int = 0
    step_seconds: float = 0.0  # inside EngineCore.step: schedule, run the model, sample, update
    batch_sequences: int = 0  # summed over steps: / steps is the mean batch width
    batch_tokens: int = 0
    graph_steps: int = 0  # steps replayed from CUDA graphs (the rest ran eagerly: prefill, mixed)
    graph_step_seconds: float = 0.0
    ipc_seconds: float = 0.0  # the core process's own loop: receiving requests, sending outputs
    kernel_compiles: int = 0  # Triton kernels compiled after the warm-up (each one stalls a step)
