"""LLMEngine: requests in, one scheduler step at a time, outputs (with text deltas) out. LLM: offline API."""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..config import EngineConfig
from ..errors import InvalidRequestError
from ..models.loader import read_config
from ..platform import detect
from ..platform.device import check_build_arch
from ..sampling_params import SamplingParams
from ..tokenizer import Detokenizer, load_tokenizer
from .block_manager import BlockManager
from .model_runner import ModelRunner
from .sampler import sample
from .scheduler import Scheduler
from .sequence import Sequence


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    output_token_ids: list[int]
    text: str
    delta_text: str = ""
    delta_token_ids: list[int] = field(default_factory=list)
    finished: bool = False
    finish_reason: str | None = None
    logprobs: list[dict] = field(default_factory=list)
    num_cached_tokens: int = 0


class LLMEngine:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        folder = Path(config.model)
        self.platform = detect()
        check_build_arch(self.platform)
        self.tokenizer = load_tokenizer(folder, config.load_format)
        model_len = read_config(folder).get("max_position_embeddings", 4096)
        self.max_model_len = min(config.max_model_len or model_len, model_len)
        self.runner = ModelRunner(config, self.platform, self.max_model_len)
        self.block_manager = BlockManager(
            self.runner.num_blocks, config.block_size, config.enable_prefix_caching
        )
        self.scheduler = Scheduler(self.block_manager, config.max_num_seqs, config.max_num_batched_tokens)
        self.requests: dict[str, Sequence] = {}
        self.detokenizers: dict[str, Detokenizer] = {}
        self._ids = itertools.count()

    def add_request(
        self, prompt: str | list[int], params: SamplingParams | None = None, request_id: str | None = None
    ) -> Sequence:
        params = params or SamplingParams()
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        self.check_prompt(ids, params)
        request_id = request_id or f"req-{next(self._ids)}"
        if request_id in self.requests:
            raise InvalidRequestError(f"request id {request_id!r} is already in flight")
        seq = Sequence(ids, params, request_id=request_id)
        seq.max_tokens = params.max_tokens or (self.max_model_len - len(ids))
        self.requests[request_id] = seq
        self.detokenizers[request_id] = Detokenizer(self.tokenizer)
        self.scheduler.add(seq)
        return seq

    def warm_up(self, num_seqs: int = 2, prompt_len: int = 16) -> None:
        """A short batch before serving, so first-call costs (allocator growth, kernel compilation, lazy
        imports) are not paid inside the first users' requests."""
        vocab = self.runner.model.args.vocab_size
        prompt_len = max(1, min(prompt_len, self.max_model_len - 5))
        params = SamplingParams(max_tokens=4, temperature=0, ignore_eos=True)
        for i in range(num_seqs):
            self.add_request([(3 + 7 * i + j) % vocab for j in range(prompt_len)], params, f"warm-up-{i}")
        while self.has_unfinished():
            self.step()

    def check_prompt(self, ids: list[int], params: SamplingParams) -> None:
        if not ids:
            raise InvalidRequestError("the prompt is empty")
        if len(ids) >= self.max_model_len:
            raise InvalidRequestError(
                f"the prompt has {len(ids)} tokens but the model's context length is "
                f"{self.max_model_len}; shorten the prompt"
            )
        if params.max_tokens and len(ids) + params.max_tokens > self.max_model_len:
            raise InvalidRequestError(
                f"the prompt has {len(ids)} tokens and max_tokens is {params.max_tokens}: "
                f"{len(ids) + params.max_tokens} exceeds the context length {self.max_model_len}"
            )
        bad = [t for t in ids if not 0 <= t < self.runner.model.args.vocab_size]
        if bad:
            raise InvalidRequestError(f"token ids out of the vocabulary: {bad[:5]}")

    def abort(self, request_id: str) -> None:
        seq = self.requests.pop(request_id, None)
        self.detokenizers.pop(request_id, None)
        if seq is not None:
            self.scheduler.finish(seq, "abort")

    def has_unfinished(self) -> bool:
        return self.scheduler.has_unfinished()

    def step(self) -> list[RequestOutput]:
        batch = self.scheduler.schedule()
        if not batch:
            return []
        logits = self.runner.run(batch)
        ready = self.scheduler.complete_step(batch)
        outputs = []
        if ready:
            tokens = sample(logits, ready)
            for seq, token in zip(ready, tokens, strict=True):
                outputs.append(self._append(seq, token))
        return outputs

    def _append(self, seq: Sequence, token: int) -> RequestOutput:
        seq.token_ids.append(token)
        if seq.first_token_time is None:
            seq.first_token_time = time.monotonic()
        detok = self.detokenizers[seq.request_id]
        delta = detok.update(seq.output_token_ids)
        reason = self._stop_reason(seq, token)
        text = detok.text
        if reason is None:
            for stop in seq.params.stop:
                cut = text.find(stop, max(0, len(text) - len(delta) - len(stop)))
                if cut >= 0:
                    reason, text = "stop", text[:cut]
                    delta = delta[: max(0, len(delta) - (len(detok.text) - cut))]
                    break
        if reason is not None:
            self.scheduler.finish(seq, reason)
            self.requests.pop(seq.request_id, None)
            self.detokenizers.pop(seq.request_id, None)
        return RequestOutput(
            seq.request_id,
            seq.token_ids[: seq.num_prompt_tokens],
            seq.output_token_ids,
            text,
            delta,
            [token],
            reason is not None,
            reason,
            seq.logprobs,
            seq.num_cached_tokens,
        )

    def _stop_reason(self, seq: Sequence, token: int) -> str | None:
        p = seq.params
        if not p.ignore_eos and token in self.tokenizer.eos_token_ids:
            return "stop"
        if token in p.stop_token_ids:
            return "stop"
        if seq.num_output_tokens >= seq.max_tokens or seq.num_tokens >= self.max_model_len:
            return "length"
        return None


class LLM(LLMEngine):
    def __init__(self, model: str, **kwargs) -> None:
        super().__init__(EngineConfig(model=model, **kwargs))

    def generate(
        self,
        prompts: list[str] | list[list[int]],
        sampling_params: SamplingParams | list[SamplingParams] | None = None,
    ) -> list[RequestOutput]:
        params = sampling_params if isinstance(sampling_params, list) else [sampling_params] * len(prompts)
        order = [self.add_request(p, sp).request_id for p, sp in zip(prompts, params, strict=True)]
        final: dict[str, RequestOutput] = {}
        while self.has_unfinished():
            for out in self.step():
                if out.finished:
                    final[out.request_id] = out
        return [final[r] for r in order]
