"""Run LLMEngine in its own thread; HTTP handlers talk to it through queues and never block it."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..engine.llm_engine import LLMEngine, RequestOutput
from ..errors import AtomError, InvalidRequestError
from ..sampling_params import SamplingParams


class QueueFullError(AtomError):
    pass


@dataclass
class _Add:
    prompt: str | list[int]
    params: SamplingParams
    request_id: str
    sink: asyncio.Queue
    loop: asyncio.AbstractEventLoop


class AsyncEngine:
    def __init__(self, engine: LLMEngine, max_queued_requests: int = 256) -> None:
        self.engine = engine
        self.max_queued_requests = max_queued_requests
        self.commands: queue.Queue = queue.Queue()
        self.sinks: dict[str, tuple[asyncio.Queue, asyncio.AbstractEventLoop]] = {}
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="atom-engine", daemon=True)
        self.thread.start()

    # ---- called from the event loop -------------------------------------------------------------------
    def admit(self, prompts: list[list[int]], params: SamplingParams, n: int = 1) -> None:
        """Reject a request before any stream starts (HTTP status still unsent); add_request re-checks.
        Every sequence it brings (n per prompt) counts against the queue limit."""
        for k, ids in enumerate(prompts):
            try:
                self.engine.check_prompt(ids, params)
            except InvalidRequestError as e:
                raise InvalidRequestError(f"prompt {k}: {e}" if len(prompts) > 1 else str(e)) from e
        incoming, limit = len(prompts) * n, self.max_queued_requests
        if incoming > limit:  # no retry can help: say so instead of 429
            raise InvalidRequestError(
                f"this request brings {incoming} sequences (prompts x n), more than the server queues at "
                f"once ({limit}, --max-queued-requests); split it"
            )
        waiting = len(self.engine.scheduler.waiting) + self.commands.qsize()
        if waiting + incoming > limit:
            raise QueueFullError(f"{waiting} requests are queued (limit {limit}); retry later")

    async def generate(
        self, prompt: str | list[int], params: SamplingParams, request_id: str
    ) -> AsyncIterator[RequestOutput]:
        sink: asyncio.Queue = asyncio.Queue()
        self.commands.put(_Add(prompt, params, request_id, sink, asyncio.get_running_loop()))
        finished = False
        try:
            while True:
                item = await sink.get()
                if isinstance(item, Exception):
                    raise item
                yield item
                if item.finished:
                    finished = True
                    return
        finally:
            if not finished:  # client went away or the handler failed: free the KV blocks now
                self.commands.put(("abort", request_id))

    def shutdown(self) -> None:
        self._stop.set()
        self.commands.put(("wake", None))
        self.thread.join(timeout=10)

    # ---- the engine thread ----------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            self._drain(block=not self.engine.has_unfinished())
            if not self.engine.has_unfinished():
                continue
            try:
                outputs = self.engine.step()
            except Exception as e:  # a failed step fails its requests, never the server
                for rid in list(self.sinks):
                    self._send(rid, e)
                    self.engine.abort(rid)
                self.sinks.clear()
                continue
            for out in outputs:
                self._send(out.request_id, out)
                if out.finished:
                    self.sinks.pop(out.request_id, None)

    def _drain(self, block: bool) -> None:
        try:
            cmd = self.commands.get(timeout=0.05) if block else self.commands.get_nowait()
        except queue.Empty:
            return
        while True:
            self._apply(cmd)
            try:
                cmd = self.commands.get_nowait()
            except queue.Empty:
                return

    def _apply(self, cmd) -> None:
        if isinstance(cmd, _Add):
            self.sinks[cmd.request_id] = (cmd.sink, cmd.loop)
            try:
                self.engine.add_request(cmd.prompt, cmd.params, cmd.request_id)
            except Exception as e:
                self._send(cmd.request_id, e)
                self.sinks.pop(cmd.request_id, None)
        elif cmd[0] == "abort":
            self.sinks.pop(cmd[1], None)
            self.engine.abort(cmd[1])

    def _send(self, request_id: str, item) -> None:
        target = self.sinks.get(request_id)
        if target:
            sink, loop = target
            loop.call_soon_threadsafe(sink.put_nowait, item)
