"""A tensor-parallel worker process (started by workers.start_local_workers): join the group, build this
rank's shard, run every step rank 0 sends. It leaves when rank 0 says so, when its parent is gone, or
when rank 0's rendezvous store stops answering (a remote node whose node 0 died)."""

from __future__ import annotations

import os
import pickle
import signal
import sys
from dataclasses import replace

import zmq

from ..config import EngineConfig
from ..engine.model_runner import ModelRunner
from ..engine.step import step_decoder
from ..platform import detect
from .workers import step_channel

IDLE_CHECK_S = 2.0  # a waiting worker checks that rank 0 is still there this often


def run_worker(config: EngineConfig, rank: int, max_model_len: int) -> None:
    """A worker process: join the group, build this rank's shard, run steps until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is rank 0's to handle; it tells us to stop
    config = replace(config, parallel=config.parallel.for_rank(rank))
    context = zmq.Context()
    socket = context.socket(zmq.DEALER)
    socket.connect(step_channel(config.parallel, bind=False))
    socket.send(str(rank).encode())
    runner = ModelRunner(config, detect(), max_model_len)
    parent = os.getppid()
    try:
        while True:
            if not socket.poll(IDLE_CHECK_S * 1000):
                if os.getppid() != parent or not _rank_0_alive():
                    return
                continue
            step = step_decoder.decode(socket.recv())
            if step is None:
                return
            runner.execute(step)
    finally:
        socket.close(linger=0)
        context.term()
        runner.close()


def _rank_0_alive() -> bool:
    """Rank 0 hosts the rendezvous store: if it stops answering, rank 0 is gone."""
    import torch.distributed as dist

    try:
        dist.distributed_c10d._get_default_store().add("atom/alive", 0)
        return True
    except Exception:
        return False


def main() -> None:
    """A worker process's entry point (start_local_workers)."""
    run_worker(*pickle.loads(sys.stdin.buffer.read()))
