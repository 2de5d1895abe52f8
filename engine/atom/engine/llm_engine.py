"""LLMEngine: the engine core and the output processor in one process (requests in, RequestOutputs with
text out, one step at a time). LLM: the offline API over it."""

from __future__ import annotations

import itertools
from pathlib import Path

from ..config import EngineConfig
from ..output import OutputProcessor, RequestOutput
from ..sampling_params import SamplingParams
from ..tokenizer import load_tokenizer
from .core import EngineCore
from .sequence import Sequence

__all__ = ["LLM", "LLMEngine", "RequestOutput"]


class LLMEngine:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.core = EngineCore(config)
        self.tokenizer = load_tokenizer(Path(config.model), config.load_format)
        self.output = OutputProcessor(self.tokenizer)
        self._ids = itertools.count()

    # the core's parts, for benchmarks and tests that look inside
    @property
    def runner(self):
        return self.core.runner

    @property
    def scheduler(self):
        return self.core.scheduler

    @property
    def block_manager(self):
        return self.core.block_manager

    @property
    def requests(self) -> dict[str, Sequence]:
        return self.core.requests

    @property
    def max_model_len(self) -> int:
        return self.core.info.max_model_len

    def add_request(
        self, prompt: str | list[int], params: SamplingParams | None = None, request_id: str | None = None
    ) -> Sequence:
        params = params or SamplingParams()
        ids = self.tokenizer.encode(prompt) if isinstance(prompt, str) else list(prompt)
        request_id = request_id or f"req-{next(self._ids)}"
        seq = self.core.add(request_id, ids, params)
        self.output.add(request_id, ids, params)
        return seq

    def abort(self, request_id: str) -> None:
        self.core.abort(request_id)
        self.output.abort(request_id)

    def has_unfinished(self) -> bool:
        return self.core.has_unfinished()

    def warm_up(self) -> None:
        self.core.warm_up()

    def close(self) -> None:
        self.core.close()

    def __enter__(self) -> LLMEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def step(self) -> list[RequestOutput]:
        outputs, stopped = self.output.process(self.core.step())
        for request_id in stopped:  # a stop string ended it: the core stops computing it now
            self.core.abort(request_id)
        return outputs


class LLM(LLMEngine):
    """LLM(model, **EngineConfig fields), e.g. LLM(path, tensor_parallel_size=2)."""

    def __init__(self, model: str, **kwargs) -> None:
        super().__init__(EngineConfig(model=model, **kwargs))

    @classmethod
    def from_config(cls, config: EngineConfig) -> LLM:
        llm = cls.__new__(cls)
        LLMEngine.__init__(llm, config)
        return llm

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
