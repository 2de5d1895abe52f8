"""EngineCore: schedule -> run the model -> sample -> update the scheduler. Plain data in (token ids,
sampling params, aborts) and out (new token ids, logprobs, finish reasons, stats); no text.

Lookahead (async scheduling): the tokens a step draws stay on the device while the next step is
scheduled and launched; each sequence holds a marker as its last token meanwhile (step.take_previous
puts the real one in on the device; under tensor parallelism rank 0 broadcasts them to the workers). Only then does the host wait for them, with the GPU already busy,
and the outputs of a step come out during the next one. A sequence that ends on a token it drew (end of
sequence, stop ids, its grammar) has computed one row too many, dropped unread; one that ends by length
is known to, so a step with one reads its tokens at once instead.

The offline LLM drives it in-process; the server runs it in a process of its own (server/core_process.py).
"""

from __future__ import annotations

import gc
import hashlib
import json
import time
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from ..backends.compile_watch import CompileWatch
from ..backends.row_buckets import warm_up_token_counts
from ..config import EngineConfig
from ..errors import InvalidRequestError
from ..models.loader import read_config
from ..platform import detect
from ..platform.device import check_build_arch
from ..sampling_params import SamplingParams
from ..tokenizer import load_tokenizer
from .block_manager import BlockManager
from .model_runner import ModelRunner
from .outputs import CoreOutput, EngineStats, FinishReason, TokenLogprob
from .sampler import Drawn, SamplerOutput, sample_on_device
from .scheduler import Scheduler
from .sequence import Sequence
from .structured import Grammars


@dataclass
class Pending:
    """A step's drawn tokens not yet read: seqs[i] holds the marker -(1 + i) as its last token."""

    seqs: list[Sequence]
    drawn: Drawn


@dataclass(frozen=True)
class ModelInfo:
    """What a client needs to validate requests without the core: sent once the core is ready."""

    max_model_len: int
    vocab_size: int
    fingerprint: str = ""  # which build and kernels answer (OpenAI's system_fingerprint)


def _engine_version() -> str:
    try:
        return version("atom-engine")
    except PackageNotFoundError:  # run from a source tree
        return "source"


def build_fingerprint(platform, backends: dict[str, str]) -> str:
    """Changes when the image (its build manifest: recipe and every wheel's hash), the engine version,
    the device architecture or a chosen backend changes; equal for replicas of one deployment."""
    build = platform.build or {}
    what = {
        "engine": _engine_version(),
        "recipe_sha256": build.get("recipe_sha256"),
        "wheels": sorted(str(w.get("sha256", w)) for w in build.get("wheels", ())),
        "arch": platform.arch,
        "backends": sorted(backends.items()),
    }
    return "fp_" + hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]


def resolve_max_model_len(config: EngineConfig) -> int:
    """The context length served: the model's, or less when the config asks for less."""
    model_len = read_config(Path(config.model)).get("max_position_embeddings", 4096)
    return min(config.max_model_len or model_len, model_len)


def check_prompt(ids: list[int], params: SamplingParams, info: ModelInfo) -> None:
    """The checks a request must pass; the API process runs them too, before anything is queued."""
    if not ids:
        raise InvalidRequestError("the prompt is empty")
    if len(ids) >= info.max_model_len:
        raise InvalidRequestError(
            f"the prompt has {len(ids)} tokens but the model's context length is "
            f"{info.max_model_len}; shorten the prompt"
        )
    if params.max_tokens and len(ids) + params.max_tokens > info.max_model_len:
        raise InvalidRequestError(
            f"the prompt has {len(ids)} tokens and max_tokens is {params.max_tokens}: "
            f"{len(ids) + params.max_tokens} exceeds the context length {info.max_model_len}"
        )
    bad = [t for t in ids if not 0 <= t < info.vocab_size]
    if bad:
        raise InvalidRequestError(f"token ids out of the vocabulary: {bad[:5]}")
    biased = sorted(t for t in params.logit_bias if t >= info.vocab_size)
    if biased:
        raise InvalidRequestError(
            f"logit_bias names token ids past the vocabulary ({info.vocab_size} tokens): {biased[:5]}"
        )


class EngineCore:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        folder = Path(config.model)
        self.platform = detect()
        check_build_arch(self.platform)
        # only the end-of-sequence ids (and, for grammars, the token table) are needed: text never
        # enters the core
        tokenizer = load_tokenizer(folder, config.load_format)
        self.eos_token_ids = tokenizer.eos_token_ids
        max_model_len = resolve_max_model_len(config)
        self.runner = ModelRunner(config, self.platform, max_model_len)
        backends = {layer: sel.name for layer, sel in self.runner.selections.items()}
        self.info = ModelInfo(
            max_model_len, self.runner.model.args.vocab_size, build_fingerprint(self.platform, backends)
        )
        self.block_manager = BlockManager(
            self.runner.num_blocks, config.block_size, config.enable_prefix_caching
        )
        self.scheduler = Scheduler(self.block_manager, config.max_num_seqs, config.max_num_batched_tokens)
        self.requests: dict[str, Sequence] = {}
        table = tokenizer.tok.to_str() if hasattr(tokenizer, "tok") else None  # None: ids-only model
        self.grammars = Grammars(table, self.info.vocab_size, self.eos_token_ids)
        self.counters = EngineStats()  # only its counter fields are kept here
        self.compile_watch = CompileWatch()  # armed by a process that holds this one engine
        self.lookahead = config.async_scheduling
        self.pending: Pending | None = None

    def add(self, request_id: str, prompt_token_ids: list[int], params: SamplingParams) -> Sequence:
        check_prompt(prompt_token_ids, params, self.info)
        if request_id in self.requests:
            raise InvalidRequestError(f"request id {request_id!r} is already in flight")
        if params.grammar:
            self.grammars.add(request_id, params.grammar)
        seq = Sequence(list(prompt_token_ids), params, request_id=request_id)
        seq.max_tokens = params.max_tokens or (self.info.max_model_len - len(prompt_token_ids))
        self.requests[request_id] = seq
        self.scheduler.add(seq)
        return seq

    def abort(self, request_id: str) -> None:
        seq = self.requests.get(request_id)
        if seq is not None:
            self._finish(seq, "abort")

    def _finish(self, seq: Sequence, reason: FinishReason) -> None:
        """The request leaves: its blocks, its entry and its grammar go."""
        self.scheduler.finish(seq, reason)
        self.requests.pop(seq.request_id, None)
        self.grammars.drop(seq.request_id)

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished() or self.pending is not None

    def check_workers(self) -> None:
        """Raise EngineDeadError when a tensor-parallel worker has died (a no-op without workers)."""
        if self.runner.workers is not None:
            self.runner.workers.check()

    def close(self) -> None:
        """Stops the tensor-parallel workers (if any); the core cannot step afterwards."""
        self.runner.close()

    def step(self) -> list[CoreOutput]:
        start, graph_steps = time.perf_counter(), self.counters.graph_steps
        try:
            return self._step()
        finally:
            elapsed = time.perf_counter() - start
            self.counters.step_seconds += elapsed
            if self.counters.graph_steps != graph_steps:  # this step replayed a CUDA graph
                self.counters.graph_step_seconds += elapsed

    def _step(self) -> list[CoreOutput]:
        batch = self.scheduler.schedule()
        pending, self.pending = self.pending, None
        if not batch:  # nothing to launch: the last step's tokens are all that is left
            return self._read(pending) if pending else []
        c = self.counters
        c.steps += 1
        c.batch_sequences += len(batch.seqs)
        c.batch_tokens += batch.total_tokens
        logits = self.runner.run(batch, pending.drawn.tokens if pending else None)
        c.graph_steps += self.runner.last_step_graphed
        outputs = self._read(pending) if pending else []  # the GPU has this step to run meanwhile
        ready = self.scheduler.complete_step(batch)
        live = [i for i, seq in enumerate(ready) if not seq.is_finished]
        if len(live) < len(ready):  # ended on the token read just now: their rows are dropped
            logits, ready = logits[live], [ready[i] for i in live]
        if not ready:
            return outputs
        allowed = self.grammars.allowed(ready, logits.device)
        drawn = sample_on_device(logits, ready, self._suppressed(ready), allowed)
        if self.lookahead and not any(self._ends_by_length(seq) for seq in ready):
            for row, seq in enumerate(ready):
                seq.token_ids.append(-1 - row)
            self.pending = Pending(ready, drawn)
            return outputs
        return outputs + self._outputs(ready, drawn.read(ready))

    def _read(self, pending: Pending) -> list[CoreOutput]:
        """Wait for a step's drawn tokens and put each in place of its marker (a sequence aborted
        meanwhile is gone: its token is dropped)."""
        for seq in pending.seqs:
            seq.token_ids.pop()
        return self._outputs(pending.seqs, pending.drawn.read(pending.seqs))

    def _outputs(self, seqs: list[Sequence], sampled: SamplerOutput) -> list[CoreOutput]:
        return [
            self._append(seq, token, logprob)
            for seq, token, logprob in zip(seqs, sampled.tokens, sampled.logprobs, strict=True)
            if not seq.is_finished
        ]

    def _ends_by_length(self, seq: Sequence) -> bool:
        """Whether the token this sequence draws now is its last by max_tokens or the context length."""
        return seq.num_output_tokens + 1 >= seq.max_tokens or seq.num_tokens + 1 >= self.info.max_model_len

    def stats(self) -> EngineStats:
        bm, c = self.block_manager, self.counters
        return EngineStats(
            running=len(self.scheduler.running),
            waiting=len(self.scheduler.waiting),
            kv_usage=bm.usage(),
            free_blocks=bm.num_free,
            prefix_hit_rate=bm.hit_rate(),
            steps=c.steps,
            step_seconds=c.step_seconds,
            batch_sequences=c.batch_sequences,
            batch_tokens=c.batch_tokens,
            graph_steps=c.graph_steps,
            graph_step_seconds=c.graph_step_seconds,
            ipc_seconds=c.ipc_seconds,
            kernel_compiles=self.compile_watch.count,
        )

    def warm_up(self) -> None:
        """Batches before serving, so first-call costs (allocator growth, kernel compilation, lazy
        imports) are not paid inside the first users' requests. On a GPU it covers the shapes real
        traffic brings first: a full prefill chunk, then a decode batch as wide as the scheduler allows
        (Triton compiles per shape; a cold server paid seconds of it in its first requests), and
        prefills of token counts that land in each variant Triton compiles for a step's token count
        (backends/row_buckets.py): a server's mixed batches bring arbitrary counts, which compiled
        kernels mid-traffic before (the stats count any that still do)."""
        self._warm(num_seqs=2, prompt_len=16)
        if self.platform.kind != "cpu":
            free_tokens = self.block_manager.num_free * self.config.block_size
            chunk = min(self.config.max_num_batched_tokens, self.info.max_model_len - 5, free_tokens // 2)
            self._warm(num_seqs=1, prompt_len=chunk)
            width = min(self.config.max_num_seqs, max(1, free_tokens // 64))
            self._warm(num_seqs=width, prompt_len=8)
            for n, tokens in enumerate(warm_up_token_counts(chunk)):
                self._warm(num_seqs=1, prompt_len=tokens, salt=n + 1)
        self.counters = EngineStats()  # the counters describe the traffic served, not the warm-up

    def settle(self) -> None:
        """Once warmed up, in a process that holds this one engine for its life (the server's core
        process, a benchmark): what exists now (the model, kernel caches) lives as long as the process,
        so full garbage collections need not walk it again (frozen objects in reference cycles are never
        collected: not for a process of many engines); Triton kernels compiled from now on are counted
        (the warm-up missed them)."""
        gc.collect()
        gc.freeze()
        self.compile_watch.arm()

    def _warm(self, num_seqs: int, prompt_len: int, salt: int = 0) -> None:
        """salt: a different prompt, so the prefix cache does not shorten the prefill."""
        vocab = self.info.vocab_size
        prompt_len = max(1, min(prompt_len, self.info.max_model_len - 5))
        params = SamplingParams(max_tokens=4, temperature=0, ignore_eos=True)
        for i in range(num_seqs):
            first = 3 + 7 * i + 1009 * salt
            self.add(f"warm-up-{i}", [(first + j) % vocab for j in range(prompt_len)], params)
        while self.has_unfinished():
            self.step()

    def _append(self, seq: Sequence, token: int, logprob: TokenLogprob | None) -> CoreOutput:
        seq.token_ids.append(token)
        if seq.first_token_time is None:
            seq.first_token_time = time.monotonic()
        reason = self._stop_reason(seq, token)
        if reason is None and self.grammars.advance(seq.request_id, token):
            reason = "stop"  # the grammar is complete: only end-of-sequence could follow
        if reason is not None:
            self._finish(seq, reason)
        return CoreOutput(
            seq.request_id, [token], [logprob] if logprob else None, reason, seq.num_cached_tokens
        )

    def _suppressed(self, seqs: list[Sequence]) -> list[list[int]] | None:
        """Per sequence, the tokens it may not sample yet: the ones that would end it before min_tokens."""
        if not any(s.params.min_tokens for s in seqs):
            return None
        return [
            [*([] if s.params.ignore_eos else self.eos_token_ids), *s.params.stop_token_ids]
            if s.num_output_tokens < s.params.min_tokens
            else []
            for s in seqs
        ]

    def _stop_reason(self, seq: Sequence, token: int) -> FinishReason | None:
        p = seq.params
        if not p.ignore_eos and token in self.eos_token_ids:
            return "stop"
        if token in p.stop_token_ids:
            return "stop"
        if seq.num_output_tokens >= seq.max_tokens or seq.num_tokens >= self.info.max_model_len:
            return "length"
        return None
