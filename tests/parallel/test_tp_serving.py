"""`atom serve` with tensor parallelism: two "nodes" on one machine behind the official openai client,
and the failures a multi-process engine must not hide (a worker killed, a worker hung)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai

from atom import LLM, SamplingParams

from ..server.conftest import free_port, running_server, server_log

PROMPT = [17, 4242, 999, 31, 7, 2048, 1234, 55]


def single_rank_text(folder, n: int) -> str:
    with LLM(str(folder)) as llm:
        return llm.generate([PROMPT], SamplingParams(max_tokens=n, temperature=0, ignore_eos=True))[0].text


def workers_of(server: subprocess.Popen) -> list[int]:
    """PIDs of the tensor-parallel worker processes under this server (its core's children)."""
    found = subprocess.run(
        ["pgrep", "-f", "atom.parallel.worker import main"], capture_output=True, text=True
    ).stdout
    pids = [int(p) for p in found.split()]
    mine = []
    for pid in pids:
        ancestor = pid
        while ancestor > 1:
            stat = Path(f"/proc/{ancestor}/stat").read_text()
            ancestor = int(stat.rsplit(")", 1)[1].split()[1])  # the parent pid
            if ancestor == server.pid:
                mine.append(pid)
                break
    return mine


def wait_exit(proc: subprocess.Popen, timeout: float) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"the server did not exit within {timeout} s: {server_log(proc)}") from None


def test_two_nodes_serve_the_single_rank_tokens(tiny_llama):
    """Node 1 runs its rank only (no HTTP); node 0 serves. Same greedy tokens as one rank."""
    port = free_port() + 100  # the next one up is the step channel
    common = ["-tp", "2", "--nnodes", "2", "--master-addr", "127.0.0.1", "--master-port", str(port)]
    node1 = subprocess.Popen(
        [sys.executable, "-m", "atom.cli", "serve", "--model", str(tiny_llama), *common, "--node-rank", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        with running_server(tiny_llama, *common, "--node-rank", "0") as (url, _):
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="none")
            reply = client.completions.create(
                model="tiny-llama",
                prompt=PROMPT,
                max_tokens=10,
                temperature=0,
                extra_body={"ignore_eos": True},
            )
        assert node1.wait(timeout=30) == 0, node1.stdout.read()  # node 0 said goodbye: node 1 ends cleanly
    finally:
        node1.kill()
    assert reply.choices[0].text == single_rank_text(tiny_llama, 10)
    assert reply.usage.completion_tokens == 10


def test_a_killed_worker_ends_the_server_with_the_reason(tiny_llama):
    with running_server(tiny_llama, "-tp", "2") as (url, proc):
        (worker,) = workers_of(proc)
        os.kill(worker, signal.SIGKILL)
        assert wait_exit(proc, 30) == 1
    log = server_log(proc)
    assert "tensor-parallel worker rank-1" in log and "exited with code -9" in log, log


def test_a_hung_worker_ends_the_server_at_the_collective_timeout(tiny_llama):
    with running_server(tiny_llama, "-tp", "2", "--distributed-timeout", "5") as (url, proc):
        (worker,) = workers_of(proc)
        os.kill(worker, signal.SIGSTOP)  # alive, holding its sockets open, never answering
        try:
            started = time.monotonic()
            reply = httpx.post(
                f"{url}/v1/completions",
                json={"model": "tiny-llama", "prompt": PROMPT, "max_tokens": 4},
                timeout=60,
            )
            assert reply.status_code == 503, reply.text
            assert "tensor-parallel step failed" in reply.json()["error"]["message"]
            assert wait_exit(proc, 30) == 1
            assert time.monotonic() - started < 40
        finally:
            os.kill(worker, signal.SIGKILL)
