"""Counts the Triton kernels compiled (or loaded from the disk cache) after the warm-up.

A kernel compiled while serving stalls every request in that step for as long as compiling takes (a
second or more); it means the warm-up missed a shape or a specialization Triton makes (an integer equal
to 1 or divisible by 16, a pointer's alignment, a block size picked from the token count). The core
counts them in its stats and logs each one once, by name and argument types, so the warm-up can be
widened where it matters.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("atom.kernels")


class CompileWatch:
    """Installs itself as Triton's jit_cache_hook (keeping any hook already there) once armed."""

    def __init__(self) -> None:
        self.count = 0
        self.kernels: list[str] = []  # the first few, "name[options](argument types)"
        self._lock = threading.Lock()
        self._previous = None

    def arm(self) -> bool:
        """Start counting; False where this Triton has no such hook (nothing is counted then)."""
        try:
            from triton import knobs
        except ImportError:
            return False
        runtime = getattr(knobs, "runtime", None)
        if runtime is None or not hasattr(runtime, "jit_cache_hook"):
            return False
        self._previous = runtime.jit_cache_hook
        runtime.jit_cache_hook = self._hook
        return True

    def _hook(self, *args, **kwargs):
        with self._lock:
            self.count += 1
            if len(self.kernels) < 32:
                what = str(kwargs.get("repr", "?"))
                self.kernels.append(what)
                log.warning("compiling a Triton kernel while serving (the warm-up missed it): %s", what)
        return self._previous(*args, **kwargs) if self._previous else None
