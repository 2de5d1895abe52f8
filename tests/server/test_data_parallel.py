"""Data parallelism on one machine: `atom serve --data-parallel-size 2` runs two engine cores behind one
endpoint (SmolLM2, CPU). The official openai client gets the same greedy answers as from one engine;
requests that share a long prefix land on the replica that holds it (the router's metric and that
replica's cache hits say so); a replica killed mid-traffic fails no request silently (each finishes or
gets a retryable 503), and comes back."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from openai import OpenAI

from .conftest import running_server
from .replicas import (
    answers_as_one_engine,
    killed_replica_loses_nothing_and_returns,
    shared_prefix_lands_on_its_holder,
)


@pytest.fixture(scope="module")
def served(smollm2):
    with running_server(smollm2, "--max-model-len", "512", "--data-parallel-size", "2") as (url, proc):
        yield url, proc


@pytest.fixture(scope="module")
def client(served):
    return OpenAI(base_url=f"{served[0]}/v1", api_key="x", max_retries=0, timeout=120)


def test_two_replicas_answer_as_one_engine_does(served, client):
    answers_as_one_engine(served[0], client)


def test_a_shared_prefix_lands_on_the_replica_that_holds_it(served, client):
    shared_prefix_lands_on_its_holder(served[0], client)


def core_pids(server_pid: int) -> list[int]:
    """The server's children running engine cores (spawned interpreters; not the resource tracker)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
            cmdline = stat.parent.joinpath("cmdline").read_bytes()
        except OSError:
            continue
        if parent == server_pid and b"spawn_main" in cmdline:
            pids.append(int(stat.parent.name))
    return pids


def test_a_killed_replica_fails_nothing_silently_and_comes_back(served, client):
    url, proc = served
    pids = core_pids(proc.pid)
    assert len(pids) == 2
    killed_replica_loses_nothing_and_returns(url, proc, client, lambda: os.kill(pids[1], signal.SIGKILL))
