"""A real `atom serve` process on a free port (real HTTP, real engine, the SmolLM2 demo model)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_log(proc: subprocess.Popen, timeout: float = 30) -> str:
    """Everything the server printed (waits for the output to end: call it once the server has exited)."""
    proc.reader.join(timeout)
    return "".join(proc.log_lines)


@contextmanager
def running_server(model, *args: str, timeout: float = 120):
    port = free_port()
    cmd = [sys.executable, "-m", "atom.cli", "serve", "--model", str(model), "--port", str(port), *args]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    # Read the server's output as it comes: a pipe nobody drains fills at 64 KiB (about 800 access-log
    # lines) and then blocks the server's event loop on its next log write.
    proc.log_lines = []
    proc.reader = threading.Thread(target=lambda: proc.log_lines.extend(proc.stdout), daemon=True)
    proc.reader.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    try:
        while True:
            assert proc.poll() is None, f"server exited: {server_log(proc)}"
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not become healthy"
            time.sleep(0.3)
        yield url, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture(scope="module")
def server(smollm2):
    with running_server(smollm2, "--max-model-len", "512", "--api-key", "sk-test") as (url, proc):
        yield url
