"""One engine core in its own process (core_process.py), as the API process sees it: the process, the two
sockets to it, and a task that reads what it sends. What to do with the outputs, and with the replica's
end, is the engine client's business (on_message, on_exit): a replica knows nothing of requests.

Several replicas (data parallelism) each get their own GPUs: replica r of tp ranks takes devices
[r * tp, (r + 1) * tp) of the host's, and on the CPU an equal share of the cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import tempfile
from collections.abc import Callable
from dataclasses import replace

import zmq
import zmq.asyncio

from ..config import EngineConfig
from ..engine.core import ModelInfo
from ..engine.outputs import EngineStats
from ..errors import AtomError
from . import ipc
from .core_process import run_core


class EngineUnavailable(AtomError):
    """The core is loading, failed to load, or died."""


class CoreReplica:
    def __init__(
        self,
        index: int,
        config: EngineConfig,
        replicas: int,
        on_message: Callable[[CoreReplica, object], None],
        on_exit: Callable[[CoreReplica, str], None],
    ) -> None:
        self.index, self.config, self.replicas = index, config, replicas
        self.on_message, self.on_exit = on_message, on_exit
        self.info: ModelInfo | None = None
        self.stats = EngineStats()
        self.error: str | None = None
        self.process: multiprocessing.process.BaseProcess | None = None
        self.push: zmq.Socket | None = None
        self._dir: tempfile.TemporaryDirectory | None = None
        self._task: asyncio.Task | None = None
        self._ended: asyncio.Event | None = None  # set when the core's process ends
        self._closing = False

    @property
    def ready(self) -> bool:
        return self.info is not None and self.error is None

    async def start(self) -> None:
        """Start the core and wait until it has loaded; raises EngineUnavailable with its reason if not."""
        self.info, self.error, self._closing = None, None, False
        # sending never waits (a plain socket, NOBLOCK); receiving is awaited on the event loop
        self.send_context, self.context = zmq.Context(), zmq.asyncio.Context()
        self.push, self.pull = self.send_context.socket(zmq.PUSH), self.context.socket(zmq.PULL)
        self.push.setsockopt(zmq.SNDHWM, 0)  # never full: a send fails only when no core is connected
        self._ended = asyncio.Event()
        inbox, outbox = self._bind()
        await self._launch(inbox, outbox)
        first = await self._first_message()
        if isinstance(first, ipc.CoreFailed):
            self.error = first.error
            raise EngineUnavailable(first.error)
        self.info, self.stats = first.info, first.stats
        self._task = asyncio.create_task(self._receive(), name=f"atom-core-{self.index}-outputs")

    async def _first_message(self):
        """Ready or CoreFailed; if the core's process ends first (killed while loading), say so."""
        receive = asyncio.ensure_future(self.pull.recv())
        ended = asyncio.ensure_future(self._ended.wait())
        done, _ = await asyncio.wait({receive, ended}, return_when=asyncio.FIRST_COMPLETED)
        ended.cancel()
        if receive not in done:
            receive.cancel()
            raise EngineUnavailable(self.error or f"engine core {self.index} ended before it was ready")
        return ipc.from_core.decode(receive.result())

    def _bind(self) -> tuple[str, str]:
        """The core's inbox and outbox, bound here: Unix sockets in a private folder (same host)."""
        self._dir = tempfile.TemporaryDirectory(prefix=f"atom-ipc-{self.index}-")
        inbox, outbox = f"ipc://{self._dir.name}/inbox", f"ipc://{self._dir.name}/outbox"
        self.push.bind(inbox)
        self.pull.bind(outbox)
        return inbox, outbox

    async def _launch(self, inbox: str, outbox: str) -> None:
        # spawn, not fork: the core gets a fresh interpreter (CUDA/ROCm cannot be forked into)
        with _devices_of(self.index, self.replicas, self.config):
            self.process = multiprocessing.get_context("spawn").Process(
                target=run_core,
                args=(self._own_config(), inbox, outbox),
                name=f"atom-engine-core-{self.index}",
                daemon=True,
            )
            self.process.start()
        asyncio.get_running_loop().add_reader(self.process.sentinel, self._exited)

    def _own_config(self) -> EngineConfig:
        if self.replicas == 1 or self.config.parallel.master_port is None:
            return self.config  # (no port given: each replica's rank 0 picks a free one)
        # each replica's tensor-parallel group rendezvous on its own port
        parallel = replace(self.config.parallel, master_port=self.config.parallel.master_port + self.index)
        return replace(self.config, parallel=parallel)

    def post(self, message) -> None:
        """Send without waiting (usable in a cancelled task's cleanup). A PUSH socket with no peer would
        wait for one forever: with the core gone, this fails at once instead."""
        try:
            if self.push is None:
                raise zmq.Again()
            self.push.send(ipc.encoder.encode(message), flags=zmq.NOBLOCK)
        except zmq.Again as e:
            raise EngineUnavailable(self.error or f"engine core {self.index} is not connected") from e

    async def _receive(self) -> None:
        while True:
            self.on_message(self, ipc.from_core.decode(await self.pull.recv()))

    def _exited(self) -> None:
        asyncio.get_running_loop().remove_reader(self.process.sentinel)
        self._gone(f"exited (exit code {self.process.exitcode})")

    def _gone(self, how: str) -> None:
        """The core's process ended (unless we ended it): say which and how."""
        self._ended.set()
        if not self._closing:
            which = "the engine core process" if self.replicas == 1 else f"engine core {self.index}"
            self.error = f"{which} {how}"
            self.on_exit(self, self.error)

    def failed(self, error: str) -> None:
        """The core said it cannot go on (CoreFailed): it is about to exit."""
        if not self.error:
            self.error = error
            self.on_exit(self, error)

    async def stop(self, final: bool = True) -> None:
        """Shut the core down (and its sockets); final=False when it is about to be started again."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
        await self._terminate(final)
        if self.push is None:
            return
        self.push.close(linger=0)
        self.pull.close(linger=0)
        self.send_context.term()
        self.context.term()
        self.push = self.pull = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    async def _terminate(self, final: bool) -> None:
        if self.process is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(self.process.sentinel)
        if self.process.is_alive():
            with contextlib.suppress(EngineUnavailable):
                self.post(ipc.Shutdown())
            await loop.run_in_executor(None, self.process.join, 10)
        if self.process.is_alive():
            self.process.kill()


def replica_devices(index: int, ranks: int, visible: list[str] | None, host_gpus: int) -> str | None:
    """The devices replica `index` (of `ranks` GPUs each) takes, as a *_VISIBLE_DEVICES value; None on a
    host without GPUs. visible: the devices this process was given (CUDA/HIP_VISIBLE_DEVICES), if any.
    Raises when the host has too few: a replica without its GPUs would otherwise start on the CPU."""
    devices = visible if visible is not None else [str(d) for d in range(host_gpus)]
    if not devices:
        return None
    mine = devices[index * ranks : (index + 1) * ranks]
    if len(mine) < ranks:
        raise EngineUnavailable(
            f"engine core {index} needs GPUs {index * ranks}..{(index + 1) * ranks - 1} but "
            f"{len(devices)} are visible here; lower --data-parallel-size / --max-data-parallel-size or "
            "--tensor-parallel-size, or spread replicas over machines (--distributed-executor-backend ray)"
        )
    return ",".join(mine)


def visible_devices() -> tuple[list[str] | None, int]:
    """(CUDA/HIP_VISIBLE_DEVICES as a list if set, the GPUs torch counts): what replica_devices takes."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") or os.environ.get("HIP_VISIBLE_DEVICES")
    import torch  # (counting does not create a CUDA context in this process)

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return (visible.split(",") if visible else None), count


@contextlib.contextmanager
def _devices_of(index: int, replicas: int, config: EngineConfig):
    """The environment the replica's process starts with (spawn copies os.environ when it starts)."""
    if replicas == 1:
        yield
        return
    saved = {k: os.environ.get(k) for k in ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "OMP_NUM_THREADS")}
    mine = replica_devices(index, config.parallel.ranks_per_node, *visible_devices())
    if mine is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = os.environ["HIP_VISIBLE_DEVICES"] = mine
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // replicas))  # CPU: share the cores
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def check_devices(slots: int, config: EngineConfig) -> None:
    """Before any replica starts: every replica index that may exist (autoscaling included) has its GPUs."""
    if slots > 1:
        replica_devices(slots - 1, config.parallel.ranks_per_node, *visible_devices())
