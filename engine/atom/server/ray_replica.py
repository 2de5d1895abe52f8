"""An engine replica as a Ray actor, placed by Ray on any node of the cluster (--distributed-executor-backend
ray). Why actors and not Ray Serve deployments: the API process already routes by prefix, streams, retries
and meters; what it needs from a cluster is a process with the right devices on some node, and to know when
that process dies. An actor in its own placement group is exactly that, and keeps one code path for the
local and the clustered server (Serve would bring a second HTTP stack and its own router).

Each replica reserves a placement group of one bundle (its GPUs, tensor-parallel ranks included, on one
node, plus a CPU) that outlives the actor: a replacement for a dead actor lands in the same reservation,
so it never waits behind other work. The core talks to the API process over the same ZeroMQ messages as a
local one, on TCP (the actor may be on another host). Ray is imported only here: an optional extra.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from ..config import EngineConfig
from . import ipc
from .replica import CoreReplica, EngineUnavailable

PLACEMENT_TIMEOUT_S = 600.0  # a cluster without the resources: say so instead of waiting forever
NAMESPACE = "atom"  # the replicas' actors are named "atom-engine-core-<index>-<API process id>" in it


def connect() -> None:
    """Join the cluster in RAY_ADDRESS (or `ray start`'s on this host); without either, start a local one."""
    try:
        import ray
    except ImportError as e:
        raise EngineUnavailable(
            "--distributed-executor-backend ray needs Ray: pip install 'atom-engine[ray]' (or a recipe "
            "with [components.ray])"
        ) from e
    if not ray.is_initialized():
        ray.init(
            address=os.environ.get("RAY_ADDRESS"),
            namespace=NAMESPACE,
            log_to_driver=False,
            configure_logging=False,
        )


class _CoreActor:
    """Runs one engine core (core_process.run_core) inside a Ray worker process."""

    def where(self) -> tuple[str, int]:
        import ray

        return ray.get_runtime_context().get_node_id(), os.getpid()

    def run(self, config: EngineConfig, inbox: str, outbox: str) -> None:
        from .core_process import run_core

        run_core(config, inbox, outbox)


def bundle_for(config: EngineConfig, gpus: bool) -> dict[str, float]:
    """What one replica reserves: every rank's GPU (on one node) and a CPU for its loop."""
    bundle = {"CPU": 1.0}
    if gpus:
        bundle["GPU"] = float(config.parallel.ranks_per_node)
    return bundle


class RayCoreReplica(CoreReplica):
    node_id: str | None = None
    pid: int | None = None
    _group = None
    _actor = None
    _run = None
    _watch: asyncio.Task | None = None

    def _bind(self) -> tuple[str, str]:
        import ray

        host = ray.util.get_node_ip_address()
        inbox = self.push.bind_to_random_port(f"tcp://{host}")
        outbox = self.pull.bind_to_random_port(f"tcp://{host}")
        return f"tcp://{host}:{inbox}", f"tcp://{host}:{outbox}"

    async def _launch(self, inbox: str, outbox: str) -> None:
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        if self._group is None:
            bundle = bundle_for(self.config, gpus=self.config.device != "cpu" and _cluster_has_gpus())
            self._group = ray.util.placement_group([bundle], strategy="STRICT_PACK")
            try:
                await asyncio.wait_for(self._group.ready(), PLACEMENT_TIMEOUT_S)
            except TimeoutError as e:
                raise EngineUnavailable(
                    f"engine core {self.index}: no Ray node offers {bundle} (cluster: "
                    f"{ray.available_resources()}); add nodes or lower --tensor-parallel-size"
                ) from e
        bundle = self._group.bundle_specs[0]
        actor_class = ray.remote(_CoreActor).options(
            num_cpus=bundle["CPU"],
            num_gpus=bundle.get("GPU", 0),
            max_restarts=0,  # the engine client restarts replicas (and resends their requests) itself
            max_concurrency=2,  # `where` answers while `run` runs
            scheduling_strategy=PlacementGroupSchedulingStrategy(self._group, placement_group_bundle_index=0),
            name=f"atom-engine-core-{self.index}-{os.getpid()}",
        )
        self._actor = actor_class.remote()
        self.node_id, self.pid = await self._actor.where.remote()
        self._run = self._actor.run.remote(self._own_config(), inbox, outbox)
        self._watch = asyncio.create_task(self._watch_run(), name=f"atom-core-{self.index}-actor")

    async def _watch_run(self) -> None:
        try:
            await self._run
            how = "exited"
        except Exception as e:  # RayActorError when its process or node dies
            how = f"died (Ray: {e.__class__.__name__}, process {self.pid} on node {self.node_id})"
        self._gone(how)

    async def _terminate(self, final: bool) -> None:
        import ray

        if self._watch is not None:
            self._watch.cancel()
        if self._actor is not None:
            with contextlib.suppress(EngineUnavailable):
                self.post(ipc.Shutdown())
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(self._run), 10)
            ray.kill(self._actor, no_restart=True)
            self._actor = self._run = None
        if final and self._group is not None:
            ray.util.remove_placement_group(self._group)
            self._group = None


def _cluster_has_gpus() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0
