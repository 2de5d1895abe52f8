"""The engine core's own process: a busy loop that never waits on HTTP.

It loads the model, says Ready (or CoreFailed), then: take every message waiting (blocking only while
idle), run one step, send its outputs with the stats. It exits on Shutdown, or when the API process is
gone (it never outlives its parent). Signals are the API process's business: it drains, then says
Shutdown.
"""

from __future__ import annotations

import os
import signal
import threading
import time

import zmq

from ..config import EngineConfig
from ..engine.core import EngineCore
from ..engine.outputs import CoreOutput
from ..errors import EngineDeadError
from . import ipc

IDLE_POLL_MS = 100
STATS_EVERY_S = 0.5  # while idle, stats still flow (the metrics' gauges stay fresh)


def run_core(config: EngineConfig, inbox: str, outbox: str) -> None:
    if threading.current_thread() is threading.main_thread():  # (a Ray actor may run it on another)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    context = zmq.Context()
    pull, push = context.socket(zmq.PULL), context.socket(zmq.PUSH)
    pull.connect(inbox)
    push.connect(outbox)
    try:
        core = EngineCore(config)
        core.warm_up()
        core.settle()
    except Exception as e:
        _say_failed(f"{e.__class__.__name__}: {e}", pull, push, context)
        return
    push.send(ipc.encoder.encode(ipc.Ready(core.info, core.stats())))
    try:
        _loop(core, pull, push)
    except EngineDeadError as e:
        _say_failed(str(e), pull, push, context)
        raise SystemExit(1) from e
    core.close()
    pull.close(linger=0)
    push.close(linger=1000)
    context.term()


def _say_failed(error: str, pull: zmq.Socket, push: zmq.Socket, context: zmq.Context) -> None:
    push.send(ipc.encoder.encode(ipc.CoreFailed(error)))
    pull.close(linger=0)
    push.close(linger=2000)  # the message goes out before the process does
    context.term()


def _loop(core: EngineCore, pull: zmq.Socket, push: zmq.Socket) -> None:
    parent, last_stats = os.getppid(), 0.0
    while True:
        core.check_workers()
        busy = core.has_unfinished()
        start = time.perf_counter()
        timeout = 0 if busy else IDLE_POLL_MS
        while pull.poll(timeout):
            message = ipc.to_core.decode(pull.recv())
            if isinstance(message, ipc.Shutdown):
                return
            _apply(core, message, push)
            timeout = 0
        if core.has_unfinished():
            received = time.perf_counter()
            outputs = _step(core)
            stepped = time.perf_counter()
            push.send(ipc.encoder.encode(ipc.StepOutputs(outputs, core.stats())))
            # the loop's own cost while busy (an idle wait for requests is not a cost)
            core.counters.ipc_seconds += time.perf_counter() - stepped + (received - start if busy else 0)
            last_stats = time.monotonic()
        elif time.monotonic() - last_stats > STATS_EVERY_S:
            if os.getppid() != parent:
                return  # the API process died without saying so
            push.send(ipc.encoder.encode(ipc.StepOutputs([], core.stats())))
            last_stats = time.monotonic()


def _step(core: EngineCore) -> list[CoreOutput]:
    """A failed step fails the requests in it, never the core (unless the engine cannot go on)."""
    try:
        return core.step()
    except EngineDeadError:
        raise
    except Exception as e:
        failed = [
            CoreOutput(rid, [], error=f"the step failed: {e.__class__.__name__}: {e}")
            for rid in core.requests
        ]
        for out in failed:
            core.abort(out.request_id)
        return failed


def _apply(core: EngineCore, message, push: zmq.Socket) -> None:
    if isinstance(message, ipc.AddRequest):
        try:
            core.add(message.request_id, message.prompt_token_ids, message.params)
        except Exception as e:  # the API process checked it already; say why anyway
            failed = CoreOutput(message.request_id, [], error=f"{e.__class__.__name__}: {e}")
            push.send(ipc.encoder.encode(ipc.StepOutputs([failed], core.stats())))
    elif isinstance(message, ipc.Abort):
        for request_id in message.request_ids:
            core.abort(request_id)
