"""The API process's side of the engine: the core runs in its own process (core_process.py); this client
sends it requests and aborts, turns what comes back into RequestOutputs (OutputProcessor, here in the
API process) and hands them to each request's stream. It never touches the scheduler: what it knows of
the core's state arrives as EngineStats with every step.

If the core process dies, every open request fails, /health turns "failed" and the server is told to
exit (on_failure), so an orchestrator restarts it instead of a server hanging.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import tempfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import zmq
import zmq.asyncio

from ..config import EngineConfig
from ..engine.core import ModelInfo, check_prompt
from ..engine.outputs import EngineStats
from ..errors import AtomError, InvalidRequestError
from ..output import OutputProcessor, RequestOutput, merge
from ..sampling_params import SamplingParams
from ..tokenizer import load_tokenizer
from . import ipc
from .core_process import run_core


class QueueFullError(AtomError):
    pass


class EngineUnavailable(AtomError):
    """The core is loading, failed to load, or died."""


class ShuttingDown(EngineUnavailable):
    """The server's shutdown deadline passed with the request still running."""


class RequestFailed(AtomError):
    """The core could not run this request (its step failed)."""


class OutputStream:
    """What the core produced for one request and its reader has not taken yet, merged into one
    output: a reader that falls behind (a slow client, a busy event loop) gets several tokens in one
    event instead of a growing queue of events."""

    def __init__(self) -> None:
        self.pending: RequestOutput | Exception | None = None
        self.ready = asyncio.Event()

    def put(self, item: RequestOutput | Exception) -> None:
        if isinstance(self.pending, RequestOutput) and isinstance(item, RequestOutput):
            item = merge(self.pending, item)
        if not isinstance(self.pending, Exception):  # an error is final
            self.pending = item
        self.ready.set()

    async def get(self) -> RequestOutput | Exception:
        await self.ready.wait()
        self.ready.clear()
        item, self.pending = self.pending, None
        return item


class EngineClient:
    def __init__(
        self,
        config: EngineConfig,
        max_queued_requests: int = 256,
        on_failure: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        self.max_queued_requests = max_queued_requests
        self.on_failure = on_failure
        self.tokenizer = None
        self.output: OutputProcessor | None = None
        self.info: ModelInfo | None = None
        self.error: str | None = None
        self.stats = EngineStats()
        self.sinks: dict[str, OutputStream] = {}
        self.unstarted: set[str] = set()  # sent, no token yet: what counts against the queue limit
        self.process: multiprocessing.process.BaseProcess | None = None
        self._closing = False
        self._tasks: list[asyncio.Task] = []

    @property
    def ready(self) -> bool:
        return self.info is not None and self.error is None

    # ---- life cycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Spawn the core, wait for it to load; on failure, record why and tell on_failure."""
        try:
            await self._start()
        except Exception as e:
            self._fail(f"{e.__class__.__name__}: {e}")

    async def _start(self) -> None:
        loop = asyncio.get_running_loop()
        folder = Path(self.config.model)
        self.tokenizer = await loop.run_in_executor(None, load_tokenizer, folder, self.config.load_format)
        self.output = OutputProcessor(self.tokenizer)
        self._dir = tempfile.TemporaryDirectory(prefix="atom-ipc-")
        inbox, outbox = f"ipc://{self._dir.name}/inbox", f"ipc://{self._dir.name}/outbox"
        # sending never waits (a plain socket, NOBLOCK); receiving is awaited on the event loop
        self.send_context, self.context = zmq.Context(), zmq.asyncio.Context()
        self.push, self.pull = self.send_context.socket(zmq.PUSH), self.context.socket(zmq.PULL)
        self.push.setsockopt(zmq.SNDHWM, 0)  # never full: a send fails only when no core is connected
        self.push.bind(inbox)
        self.pull.bind(outbox)
        # spawn, not fork: the core gets a fresh interpreter (CUDA/ROCm cannot be forked into)
        self.process = multiprocessing.get_context("spawn").Process(
            target=run_core, args=(self.config, inbox, outbox), name="atom-engine-core", daemon=True
        )
        self.process.start()
        loop.add_reader(self.process.sentinel, self._core_exited)
        first = ipc.from_core.decode(await self.pull.recv())
        if isinstance(first, ipc.CoreFailed):
            self._fail(first.error)
            return
        self.info, self.stats = first.info, first.stats
        self._tasks.append(asyncio.create_task(self._receive(), name="atom-core-outputs"))

    async def shutdown(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        if self.process is None:
            return
        asyncio.get_running_loop().remove_reader(self.process.sentinel)
        if self.process.is_alive():
            with contextlib.suppress(EngineUnavailable):
                self._post(ipc.Shutdown())
            await asyncio.get_running_loop().run_in_executor(None, self.process.join, 10)
        if self.process.is_alive():
            self.process.kill()
        self.push.close(linger=0)
        self.pull.close(linger=0)
        self.send_context.term()
        self.context.term()
        self._dir.cleanup()

    def _core_exited(self) -> None:
        asyncio.get_running_loop().remove_reader(self.process.sentinel)
        if not self._closing:
            self._fail(f"the engine core process exited (exit code {self.process.exitcode})")

    def fail_all(self, error: Exception) -> None:
        """Every open request ends with this error (their streams say so; the core is told to stop)."""
        for sink in self.sinks.values():
            sink.put(error)

    def _fail(self, error: str) -> None:
        if self.error:
            return
        self.error = error
        for sink in self.sinks.values():
            sink.put(EngineUnavailable(error))
        self.sinks.clear()
        if self.on_failure:
            self.on_failure(error)

    # ---- requests ----------------------------------------------------------------------------------
    def admit(self, prompts: list[list[int]], params: SamplingParams, n: int = 1) -> None:
        """Reject a request before any stream starts (HTTP status still unsent); the core re-checks.
        Every sequence it brings (n per prompt) counts against the queue limit."""
        if not self.ready:
            raise EngineUnavailable(self.error or "the model is still loading")
        for k, ids in enumerate(prompts):
            try:
                check_prompt(ids, params, self.info)
            except InvalidRequestError as e:
                raise InvalidRequestError(f"prompt {k}: {e}" if len(prompts) > 1 else str(e)) from e
        incoming, limit = len(prompts) * n, self.max_queued_requests
        if incoming > limit:  # no retry can help: say so instead of 429
            raise InvalidRequestError(
                f"this request brings {incoming} sequences (prompts x n), more than the server queues at "
                f"once ({limit}, --max-queued-requests); split it"
            )
        if len(self.unstarted) + incoming > limit:
            raise QueueFullError(f"{len(self.unstarted)} requests are queued (limit {limit}); retry later")

    async def generate(
        self, prompt_token_ids: list[int], params: SamplingParams, request_id: str
    ) -> AsyncIterator[RequestOutput]:
        if not self.ready:
            raise EngineUnavailable(self.error or "the model is still loading")
        sink = OutputStream()
        self.sinks[request_id] = sink
        self.unstarted.add(request_id)
        self.output.add(request_id, prompt_token_ids, params)
        finished = False
        try:
            self._post(ipc.AddRequest(request_id, prompt_token_ids, params))
            while True:
                item = await sink.get()
                if isinstance(item, Exception):
                    finished = not isinstance(item, ShuttingDown)  # else the core still runs it
                    raise item
                yield item
                if item.finished:
                    finished = True
                    return
        finally:
            self.sinks.pop(request_id, None)
            self.unstarted.discard(request_id)
            if not finished:  # the client went away or the handler failed: free the KV blocks now
                self.output.abort(request_id)
                if self.ready:
                    with contextlib.suppress(EngineUnavailable):  # a core that is gone holds no blocks
                        self._post(ipc.Abort([request_id]))

    def _post(self, message) -> None:
        """Send without waiting (usable in a cancelled task's cleanup). A PUSH socket with no peer would
        wait for one forever: with the core gone, this fails at once instead."""
        try:
            self.push.send(ipc.encoder.encode(message), flags=zmq.NOBLOCK)
        except zmq.Again as e:
            raise EngineUnavailable(self.error or "the engine core is not connected") from e

    async def _receive(self) -> None:
        while True:
            message = ipc.from_core.decode(await self.pull.recv())
            if isinstance(message, ipc.CoreFailed):
                self._fail(message.error)
                continue
            if not isinstance(message, ipc.StepOutputs):
                continue
            self.stats = message.stats
            failed = [o for o in message.outputs if o.error]
            for out in failed:
                self.output.abort(out.request_id)
                self._deliver(out.request_id, RequestFailed(out.error))
            results, stopped = self.output.process([o for o in message.outputs if not o.error])
            for result in results:
                self._deliver(result.request_id, result)
            if stopped:  # stop strings ended these: the core stops computing them
                with contextlib.suppress(EngineUnavailable):
                    self._post(ipc.Abort(stopped))

    def _deliver(self, request_id: str, item) -> None:
        self.unstarted.discard(request_id)
        sink = self.sinks.get(request_id)
        if sink is not None:
            sink.put(item)
