"""Rank 0's liveness check on the steps it launches: a step whose device work has not finished within the
collective timeout ends the engine, naming the cause.

NCCL's and gloo's collectives time out by themselves; our one-shot all-reduce (a kernel that waits for
every rank's flag) does not, so a rank that hangs with a step half launched would hold rank 0's GPU
forever. The watch asks the step's completion probe (a CUDA event's query: no sync on the step's path)
once a second from its own thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

POLL_S = 1.0


class StepWatch:
    def __init__(self, timeout_s: float, on_stuck: Callable[[str], None], poll_s: float = POLL_S) -> None:
        self.timeout_s, self.on_stuck, self.poll_s = timeout_s, on_stuck, poll_s
        self._step: tuple[float, Callable[[], bool]] | None = None
        self._stopped = threading.Event()
        threading.Thread(target=self._watch, daemon=True, name="atom-step-watch").start()

    def began(self, finished: Callable[[], bool]) -> None:
        """A step was launched; `finished()` says whether its device work is done."""
        self._step = (time.monotonic(), finished)

    def stop(self) -> None:
        self._stopped.set()

    def _watch(self) -> None:
        while not self._stopped.wait(self.poll_s):
            step = self._step
            if step is None:
                continue
            started, finished = step
            if finished():
                self._step = None if self._step is step else self._step
            elif time.monotonic() - started > self.timeout_s:
                self._stopped.set()
                self.on_stuck(
                    f"a tensor-parallel step has not finished after {self.timeout_s:g} s: a rank is stuck "
                    "(every rank must reach each all-reduce; see --distributed-timeout)"
                )
