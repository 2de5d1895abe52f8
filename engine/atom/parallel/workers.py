"""The ranks besides 0: worker processes that run every step rank 0 sends them.

Rank 0 (in the engine core's process) starts its node's workers, binds the step channel (ZeroMQ ROUTER,
one DEALER per worker; steps as MessagePack, the same libraries as the API <-> core channel), waits for
every rank's hello, then sends each step to all of them before running it itself. The collectives inside
the forward pass pair the ranks up. A worker holds no scheduler and no block manager: only its shard of
the model and of the KV cache.

Failure: a worker that exits is seen at once through its process sentinel (local ranks) or by the next
collective (remote ranks: gloo reports the closed connection, NCCL's watchdog the timeout); either ends
the engine with EngineDeadError. A hung rank ends it at the collective timeout. What a worker process
runs is in worker.py.
"""

from __future__ import annotations

import atexit
import os
import pickle
import subprocess
import sys
import threading
import time
from dataclasses import replace

import zmq

from ..config import EngineConfig, ParallelConfig
from ..engine.step import StepInput, step_encoder
from ..errors import EngineDeadError
from .step_watch import StepWatch

DEAD_RANK_GRACE_S = 10.0  # after a local worker dies, rank 0 gets this long to fail by itself


def step_channel(parallel: ParallelConfig, bind: bool) -> str:
    host = ("127.0.0.1" if parallel.nnodes == 1 else "*") if bind else parallel.master_addr
    return f"tcp://{host}:{parallel.master_port + 1}"


def pick_port(parallel: ParallelConfig) -> ParallelConfig:
    """One node and no port given: a free one (and the next one, for the step channel)."""
    if parallel.master_port is not None:
        return parallel
    import socket

    for _ in range(50):
        with socket.socket() as a, socket.socket() as b:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            try:
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return replace(parallel, master_port=port)
    raise EngineDeadError("no two consecutive free ports on 127.0.0.1 for the tensor-parallel group")


class WorkerPool:
    """Rank 0's handle on the other ranks."""

    def __init__(self, config: EngineConfig, max_model_len: int) -> None:
        parallel = config.parallel
        self.failure: str | None = None
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.bind(step_channel(parallel, bind=True))
        self.procs = start_local_workers(config, max_model_len, skip_rank_0=True)
        self.peers = self._await_hellos(parallel)
        self._closed = False
        self.watch = StepWatch(parallel.timeout_s, self._stuck)
        for proc in self.procs:
            threading.Thread(target=self._watch, args=(proc,), daemon=True).start()
        atexit.register(self.close)

    def _await_hellos(self, parallel: ParallelConfig) -> list[bytes]:
        peers: dict[int, bytes] = {}
        deadline = time.monotonic() + parallel.timeout_s
        while len(peers) < parallel.tp_size - 1:
            self.check()
            if time.monotonic() > deadline:
                missing = sorted(set(range(1, parallel.tp_size)) - set(peers))
                raise EngineDeadError(
                    f"tensor-parallel ranks {missing} did not join within {parallel.timeout_s:.0f} s "
                    f"(is every node started with --master-addr {parallel.master_addr} "
                    f"--master-port {parallel.master_port}?)"
                )
            if self.socket.poll(200):
                identity, hello = self.socket.recv_multipart()
                peers[int(hello)] = identity
        return [peers[r] for r in sorted(peers)]

    def _watch(self, proc: subprocess.Popen) -> None:
        """A local worker that exits ends the engine: rank 0 fails its step (a collective with a dead
        peer errors or times out); should it be stuck past the grace period, the process ends here."""
        code = proc.wait()
        if self._closed:
            return
        self.failure = _died(proc, code)
        time.sleep(DEAD_RANK_GRACE_S)
        if not self._closed:
            print(f"atom: {self.failure}; the engine cannot go on", file=sys.stderr, flush=True)
            os._exit(1)

    def _stuck(self, reason: str) -> None:
        """A launched step that never finishes (a rank stuck inside our all-reduce kernel, which has no
        timeout of its own): the process ends, as for a dead worker."""
        if not self._closed:
            print(f"atom: {reason}; the engine cannot go on", file=sys.stderr, flush=True)
            os._exit(1)

    def check(self) -> None:
        """Raise EngineDeadError if a worker has died (cheap: for idle loops too)."""
        for proc in self.procs:
            if self.failure is None and proc.poll() is not None:
                self.failure = _died(proc, proc.returncode)
        if self.failure is not None:
            raise EngineDeadError(self.failure)

    def send(self, step: StepInput) -> None:
        self.check()
        payload = step_encoder.encode(step)
        for peer in self.peers:
            self.socket.send_multipart([peer, payload])

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.watch.stop()
        goodbye = step_encoder.encode(None)
        for peer in self.peers:
            self.socket.send_multipart([peer, goodbye], flags=zmq.NOBLOCK)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.socket.close(linger=1000)
        self.context.term()


def _died(proc: subprocess.Popen, code: int) -> str:
    return f"tensor-parallel worker {proc.args[-1]} (pid {proc.pid}) exited with code {code}"


def start_local_workers(
    config: EngineConfig, max_model_len: int, skip_rank_0: bool
) -> list[subprocess.Popen]:
    """One fresh interpreter per rank (no inherited CUDA context or threads, and unlike multiprocessing's
    spawn, no re-import of the user's __main__); the config arrives pickled on stdin."""
    procs = []
    for rank in config.parallel.node_ranks:
        if rank == 0 and skip_rank_0:
            continue
        proc = subprocess.Popen(
            [sys.executable, "-c", "from atom.parallel.worker import main; main()", f"rank-{rank}"],
            stdin=subprocess.PIPE,
        )
        proc.stdin.write(pickle.dumps((config, rank, max_model_len)))
        proc.stdin.close()
        procs.append(proc)
    return procs


def run_node(config: EngineConfig, max_model_len: int) -> int:
    """A node other than 0: its ranks only (no HTTP, no scheduler). Returns the exit status."""
    procs = start_local_workers(config, max_model_len, skip_rank_0=False)
    codes = [proc.wait() for proc in procs]
    return next((code for code in codes if code), 0)
