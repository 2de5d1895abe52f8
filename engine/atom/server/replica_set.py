"""The replicas behind one endpoint, as a set that changes while the server runs: started together, one
added when the autoscaler asks, an idle one drained and retired, a dead one started again with backoff.

The set knows which replicas exist and which take new requests; which request runs where, and what to do
with a dead replica's requests, is the engine client's business (engine_client.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable

from ..config import EngineConfig
from .replica import CoreReplica, check_devices
from .scaling import Autoscaler, ReplicaConfig

log = logging.getLogger("atom.server")


class ReplicaSet:
    def __init__(
        self,
        config: EngineConfig,
        plan: ReplicaConfig,
        on_message: Callable[[CoreReplica, object], None],
        on_exit: Callable[[CoreReplica, str], None],
        on_retired: Callable[[CoreReplica], None],
    ) -> None:
        self.config, self.plan = config, plan
        self._on_message, self._on_exit, self._on_retired = on_message, on_exit, on_retired
        self.replicas = [self._new(i) for i in range(plan.replicas)]
        self.retiring: set[int] = set()  # replicas taking no new requests, stopped once they are empty
        self.restarting: set[int] = set()  # replicas being started again after their core died
        self.autoscaler = Autoscaler(plan) if plan.autoscale else None
        self._scaling: asyncio.Task | None = None
        self.closing = False

    def _new(self, index: int) -> CoreReplica:
        kind = CoreReplica
        if self.plan.executor == "ray":
            from .ray_replica import RayCoreReplica as kind
        return kind(index, self.config, self.plan.slots, self._on_message, self._on_exit)

    def by_index(self, index: int) -> CoreReplica:
        return next(r for r in self.replicas if r.index == index)

    def taking(self, loads: dict[int, int]) -> dict[int, int]:
        """The loads of the replicas that take new requests (ready, not retiring)."""
        return {r.index: loads[r.index] for r in self.replicas if r.ready and r.index not in self.retiring}

    # ---- life cycle --------------------------------------------------------------------------------
    async def start(self) -> None:
        """Every replica of the plan, waited for; raises with the first one's reason if one fails."""
        loop = asyncio.get_running_loop()
        if self.plan.executor == "ray":
            from .ray_replica import connect

            await loop.run_in_executor(None, connect)
        else:
            check_devices(self.plan.slots, self.config)
        await asyncio.gather(*(r.start() for r in self.replicas))

    async def stop(self) -> None:
        self.closing = True
        if self._scaling is not None:
            self._scaling.cancel()
        await asyncio.gather(*(r.stop() for r in self.replicas))

    def restart(self, replica: CoreReplica) -> None:
        """Start a dead replica again in the background (one restart loop per replica)."""
        if replica.index not in self.restarting:
            asyncio.get_running_loop().create_task(self._restart(replica))

    async def _restart(self, replica: CoreReplica) -> None:
        """Start the replica again until it comes back (a core that dies while loading, a cluster
        short of room), waiting 1, 2, 4 .. 30 s between attempts; the others serve meanwhile."""
        self.restarting.add(replica.index)
        try:
            for attempt in itertools.count():
                with contextlib.suppress(Exception):
                    await replica.stop(final=False)
                if self.closing or replica not in self.replicas:
                    return
                try:
                    await replica.start()
                    return
                except Exception as e:
                    replica.error = f"engine core {replica.index} did not come back: {e}"
                    log.warning("%s; trying again", replica.error)
                await asyncio.sleep(min(30.0, 2.0**attempt))
        finally:
            self.restarting.discard(replica.index)

    # ---- autoscaling (--max-data-parallel-size) ----------------------------------------------------
    def start_autoscaling(
        self,
        queued: Callable[[], int],
        loads: Callable[[], dict[int, int]],
        busy: Callable[[CoreReplica], bool],
    ) -> None:
        """Once a second: queued requests and per-replica loads to the autoscaler, its answer carried out;
        a retiring replica is stopped once `busy` says it holds no request."""
        if self.autoscaler is not None:
            self._scaling = asyncio.create_task(self._autoscale(queued, loads, busy), name="atom-autoscaler")

    async def _autoscale(self, queued, loads, busy) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                decision = self.autoscaler.decide(time.monotonic(), queued(), self.taking(loads()))
                if decision == 1:
                    await self._add()
                elif decision:
                    self.retiring.add(decision[1])
                await self._stop_retired(busy)
            except Exception:  # a bad tick must not end autoscaling for the server's life
                log.exception("autoscaling step failed")

    async def _add(self) -> None:
        used = {r.index for r in self.replicas}
        replica = self._new(min(i for i in range(self.plan.slots) if i not in used))
        self.replicas.append(replica)
        try:
            await replica.start()
        except Exception as e:  # no room on the cluster, or it failed to load: the others serve
            log.warning("autoscaling: engine core %d could not be added: %s", replica.index, e)
            self.replicas.remove(replica)
            with contextlib.suppress(Exception):
                await replica.stop()

    async def _stop_retired(self, busy: Callable[[CoreReplica], bool]) -> None:
        for replica in [r for r in self.replicas if r.index in self.retiring]:
            if busy(replica):
                continue  # drains first: its requests finish where they run
            self.retiring.discard(replica.index)
            self.replicas.remove(replica)
            self._on_retired(replica)
            await replica.stop()
