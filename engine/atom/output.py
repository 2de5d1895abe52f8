"""OutputProcessor: the engine core's token ids -> RequestOutputs with text.

Incremental detokenizing, stop strings (which end a request the core knows nothing about: the caller
aborts it there), and the text of logprob tokens. The offline LLM and the server use it alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .engine.outputs import CoreOutput, FinishReason, TokenLogprob
from .sampling_params import SamplingParams
from .tokenizer import Detokenizer, IdsOnlyTokenizer, Tokenizer


@dataclass
class RequestOutput:
    request_id: str
    prompt_token_ids: list[int]
    output_token_ids: list[int]  # every token so far; it grows while the request runs
    text: str
    delta_text: str = ""
    delta_token_ids: list[int] = field(default_factory=list)
    finished: bool = False
    finish_reason: FinishReason | None = None
    # per generated token: {"token_id", "token", "logprob", "top": [{"token_id", "token", "logprob"}]}
    logprobs: list[dict] = field(default_factory=list)
    num_cached_tokens: int = 0
    delta_logprobs: list[dict] = field(default_factory=list)  # the entries of delta_token_ids


def merge(earlier: RequestOutput, later: RequestOutput) -> RequestOutput:
    """Two consecutive outputs of one request as one (a consumer that fell behind takes both at once)."""
    later.delta_text = earlier.delta_text + later.delta_text
    later.delta_token_ids = earlier.delta_token_ids + later.delta_token_ids
    later.delta_logprobs = earlier.delta_logprobs + later.delta_logprobs
    return later


@dataclass
class _Request:
    prompt_token_ids: list[int]
    params: SamplingParams
    detokenizer: Detokenizer
    output_token_ids: list[int] = field(default_factory=list)
    logprobs: list[dict] = field(default_factory=list)
    sent: int = 0  # characters of text already handed out as deltas


class OutputProcessor:
    def __init__(self, tokenizer: Tokenizer | IdsOnlyTokenizer) -> None:
        self.tokenizer = tokenizer
        self.requests: dict[str, _Request] = {}

    def add(self, request_id: str, prompt_token_ids: list[int], params: SamplingParams) -> None:
        self.requests[request_id] = _Request(prompt_token_ids, params, Detokenizer(self.tokenizer))

    def abort(self, request_id: str) -> None:
        self.requests.pop(request_id, None)

    def process(self, outputs: list[CoreOutput]) -> tuple[list[RequestOutput], list[str]]:
        """RequestOutputs for the requests still followed, and the ids a stop string ended: the
        caller aborts those in the core."""
        results, stopped = [], []
        for core_output in outputs:
            state = self.requests.get(core_output.request_id)
            if state is None:  # ended here already (a stop string), or aborted
                continue
            result = self._update(core_output, state)
            if result.finished:
                self.requests.pop(core_output.request_id, None)
                if core_output.finish_reason is None:
                    stopped.append(core_output.request_id)
            results.append(result)
        return results, stopped

    def _update(self, out: CoreOutput, state: _Request) -> RequestOutput:
        state.output_token_ids += out.new_token_ids
        delta_logprobs = [self._logprob_text(lp) for lp in out.logprobs or ()]
        state.logprobs += delta_logprobs
        detok = state.detokenizer
        new = detok.update(state.output_token_ids)
        text, reason = detok.text, out.finish_reason
        stops = state.params.stop
        if reason is None and len(state.output_token_ids) >= state.params.min_tokens:
            for stop in stops:
                cut = text.find(stop, max(0, len(text) - len(new) - len(stop) + 1))
                if cut >= 0:
                    reason, text = "stop", text[:cut]
                    break
        # a stream never shows what may turn out to be the start of a stop string: the last
        # len(longest stop) - 1 characters wait until they are known not to be one
        held = 0 if reason is not None or not stops else max(map(len, stops)) - 1
        end = max(state.sent, len(text) - held)
        delta, state.sent = text[state.sent : end], end
        return RequestOutput(
            out.request_id,
            state.prompt_token_ids,
            state.output_token_ids,  # the request's own list, not a copy (a copy a step was quadratic)
            text,
            delta,
            list(out.new_token_ids),
            reason is not None,
            reason,
            state.logprobs,
            out.num_cached_tokens,
            delta_logprobs,
        )

    def _logprob_text(self, lp: TokenLogprob) -> dict:
        decode = self.tokenizer.decode
        return {
            "token_id": lp.token_id,
            "token": decode([lp.token_id]),
            "logprob": lp.logprob,
            "top": [{"token_id": t, "token": decode([t]), "logprob": v} for t, v in lp.top],
        }
