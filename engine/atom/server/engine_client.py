"""The API process's side of the engine: each core runs in its own process (replica.py, core_process.py);
this client sends them requests and aborts, turns what comes back into RequestOutputs (OutputProcessor,
here in the API process) and hands them to each request's stream. It never touches a scheduler: what it
knows of a core's state arrives as EngineStats with every step.

With one core, if it dies every open request fails, /health turns "failed" and the server is told to
exit (on_failure), so an orchestrator restarts it instead of a server hanging. With several (data
parallelism, --data-parallel-size), the router (router.py) picks a replica per request; a replica that
dies has its requests that had produced nothing yet sent to another, the others end with a retryable
503, and it is started again; only when none is left does the server fail. Which replicas exist (started,
added, retired, restarted) is the replica set's business (replica_set.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from ..config import EngineConfig
from ..engine.core import ModelInfo, check_prompt
from ..engine.outputs import EngineStats
from ..errors import AtomError, InvalidRequestError
from ..output import OutputProcessor, RequestOutput, merge
from ..sampling_params import SamplingParams
from ..tokenizer import load_tokenizer
from . import ipc
from .replica import CoreReplica, EngineUnavailable
from .replica_set import ReplicaSet
from .router import PrefixRouter
from .scaling import ReplicaConfig

__all__ = ["EngineClient", "EngineUnavailable", "QueueFullError", "RequestFailed", "ShuttingDown"]


class QueueFullError(AtomError):
    pass


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
        replicas: ReplicaConfig | None = None,
    ) -> None:
        self.config = config
        self.max_queued_requests = max_queued_requests
        self.on_failure = on_failure
        self.tokenizer = None
        self.output: OutputProcessor | None = None
        self.info: ModelInfo | None = None
        self.error: str | None = None
        self.sinks: dict[str, OutputStream] = {}
        self.unstarted: set[str] = set()  # sent, no token yet: what counts against the queue limit
        self.assigned: dict[str, CoreReplica] = {}  # request -> the replica computing it
        self.prompts: dict[str, tuple[list[int], SamplingParams]] = {}  # to resend an unstarted request
        self.plan = replicas or ReplicaConfig()
        self.replica_set = ReplicaSet(config, self.plan, self._on_message, self._on_exit, self._on_retired)
        self.router = PrefixRouter(config.block_size)
        self.routed: Counter[tuple[int, str]] = Counter()  # (replica, why) -> requests

    @property
    def replicas(self) -> list[CoreReplica]:
        return self.replica_set.replicas

    @property
    def ready(self) -> bool:
        return self.info is not None and self.error is None and any(r.ready for r in self.replicas)

    @property
    def stats(self) -> EngineStats:
        """The replicas' stats together: counts summed, ratios averaged over the live replicas."""
        live = [r.stats for r in self.replicas if r.ready] or [EngineStats()]
        if len(live) == 1:
            return live[0]
        total = {f.name: sum(getattr(s, f.name) for s in live) for f in dataclasses.fields(EngineStats)}
        for ratio in ("kv_usage", "prefix_hit_rate"):
            total[ratio] /= len(live)
        return EngineStats(**total)

    # ---- life cycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load the tokenizer, start every replica, wait for them; on failure, record why and tell
        on_failure."""
        try:
            loop = asyncio.get_running_loop()
            folder = Path(self.config.model)
            self.tokenizer = await loop.run_in_executor(None, load_tokenizer, folder, self.config.load_format)
            self.output = OutputProcessor(self.tokenizer)
            await self.replica_set.start()
            self.info = self.replicas[0].info
            self.replica_set.start_autoscaling(lambda: len(self.unstarted), self.replica_loads, self._busy)
        except Exception as e:
            self._fail(f"{e.__class__.__name__}: {e}" if not isinstance(e, EngineUnavailable) else str(e))

    async def shutdown(self) -> None:
        await self.replica_set.stop()

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

    def _on_exit(self, replica: CoreReplica, error: str) -> None:
        """A replica's core is gone: with one, the engine is; with several, its unstarted requests go
        to another replica, its started ones end retryably, and it is started again."""
        if self.replica_set.closing:
            return
        if len(self.replicas) == 1 or not any(r.ready for r in self.replicas):
            self._fail(error)
            return
        self.router.forget(replica.index)
        for request_id, where in list(self.assigned.items()):
            if where is not replica:
                continue
            try:
                if request_id not in self.unstarted or request_id not in self.prompts:
                    raise EngineUnavailable(f"{error}; retry the request")
                self._send(request_id, *self.prompts[request_id])  # nothing streamed yet: another replica
            except EngineUnavailable as e:
                self._deliver(request_id, e)
        self.replica_set.restart(replica)

    def _on_retired(self, replica: CoreReplica) -> None:
        self.router.forget(replica.index)

    def _busy(self, replica: CoreReplica) -> bool:
        return any(where is replica for where in self.assigned.values())

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
            self._send(request_id, prompt_token_ids, params)
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
            self.prompts.pop(request_id, None)
            replica = self.assigned.pop(request_id, None)
            if not finished:  # the client went away or the handler failed: free the KV blocks now
                self.output.abort(request_id)
                if replica is not None and replica.ready:
                    with contextlib.suppress(EngineUnavailable):  # a core that is gone holds no blocks
                        replica.post(ipc.Abort([request_id]))

    def _send(self, request_id: str, prompt_token_ids: list[int], params: SamplingParams) -> None:
        """To the router's replica (the only one, without data parallelism)."""
        if self.plan.slots == 1:
            replica = self.replicas[0]
        else:  # (also while an autoscaled server runs one replica: its requests stay resendable)
            index, why = self.router.choose(prompt_token_ids, self.replica_set.taking(self.replica_loads()))
            replica = self.replica_set.by_index(index)
            self.routed[(index, why)] += 1
            self.prompts[request_id] = (prompt_token_ids, params)
        self.assigned[request_id] = replica
        replica.post(ipc.AddRequest(request_id, prompt_token_ids, params))

    def replica_loads(self) -> dict[int, int]:
        """Replica index -> requests in flight on it (for routing, autoscaling and /metrics)."""
        loads = Counter(r.index for r in self.assigned.values())
        return {r.index: loads[r.index] for r in self.replicas}

    def _on_message(self, replica: CoreReplica, message) -> None:
        if isinstance(message, ipc.CoreFailed):
            replica.failed(message.error)
            return
        if not isinstance(message, ipc.StepOutputs):
            return
        replica.stats = message.stats
        failed = [o for o in message.outputs if o.error]
        for out in failed:
            self.output.abort(out.request_id)
            self._deliver(out.request_id, RequestFailed(out.error))
        results, stopped = self.output.process([o for o in message.outputs if not o.error])
        for result in results:
            self._deliver(result.request_id, result)
        if stopped:  # stop strings ended these: the core stops computing them
            with contextlib.suppress(EngineUnavailable):
                replica.post(ipc.Abort(stopped))

    def _deliver(self, request_id: str, item) -> None:
        self.unstarted.discard(request_id)
        sink = self.sinks.get(request_id)
        if sink is not None:
            sink.put(item)
