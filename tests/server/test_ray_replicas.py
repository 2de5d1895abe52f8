"""Replicas on Ray: a real local Ray cluster of two nodes (two `ray start` processes on this machine, one
CPU each, so one replica fits on each), and `atom serve --data-parallel-size 2
--distributed-executor-backend ray` joining it through RAY_ADDRESS. One replica lands on each node; the
official openai client gets the same greedy answers as from one engine under concurrent load (each
replica a tensor-parallel group of 3 ranks, started by its actor); a prefix
shared by several requests lands on one replica (its cache hits say so); killing one replica's actor
process loses no request that had not started streaming, and Ray places its replacement in the same
reservation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile

import pytest
from openai import OpenAI

from .conftest import free_port, running_server
from .replicas import (
    answers_as_one_engine,
    killed_replica_loses_nothing_and_returns,
    shared_prefix_lands_on_its_holder,
)

RAY = [sys.executable, "-m", "ray.scripts.scripts"]


def ray_start(*args: str) -> None:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    subprocess.run([*RAY, "start", "--num-cpus", "1", "--object-store-memory", str(100 << 20), *args],
                   check=True, env=env, capture_output=True, timeout=120)  # fmt: skip


@pytest.fixture(scope="module")
def cluster():
    port = free_port()
    temp = tempfile.mkdtemp(prefix="ray-")
    try:
        ray_start("--head", "--port", str(port), "--include-dashboard=false", "--disable-usage-stats",
                  "--temp-dir", temp, "--resources", '{"node_a": 1}')  # fmt: skip
        ray_start("--address", f"127.0.0.1:{port}", "--resources", '{"node_b": 1}')
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([*RAY, "stop", "--force"], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def served(smollm2, cluster, monkeypatch_module):
    monkeypatch_module.setenv("RAY_ADDRESS", cluster)
    # each replica its own tensor-parallel group of 3 ranks (SmolLM2: 9 heads, 3 K/V heads)
    args = ("--max-model-len", "512", "-dp", "2", "-tp", "3", "--distributed-executor-backend", "ray")
    with running_server(smollm2, *args, timeout=240) as (url, proc):
        yield url, proc


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def client(served):
    return OpenAI(base_url=f"{served[0]}/v1", api_key="x", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def ray_client(cluster):
    import ray

    ray.init(address=cluster, namespace="atom", log_to_driver=False)
    yield ray
    ray.shutdown()


def placement(ray, server_pid: int) -> dict[int, tuple[str, int]]:
    """Replica index -> (the name of the node it runs on: node_a / node_b, its process id), from Ray."""
    names = {
        n["NodeID"]: next(k for k in n["Resources"] if k.startswith("node_"))
        for n in ray.nodes()
        if n["Alive"]
    }
    where = {}
    for index in (0, 1):
        node, pid = ray.get(ray.get_actor(f"atom-engine-core-{index}-{server_pid}").where.remote())
        where[index] = (names[node], pid)
    return where


def test_one_replica_on_each_node(served, ray_client):
    where = placement(ray_client, served[1].pid)
    assert sorted(node for node, _ in where.values()) == ["node_a", "node_b"]


def test_two_ray_replicas_answer_as_one_engine_does(served, client):
    answers_as_one_engine(served[0], client)


def test_a_shared_prefix_lands_on_one_ray_replica(served, client):
    shared_prefix_lands_on_its_holder(served[0], client)


def test_a_killed_actor_loses_nothing_and_ray_brings_it_back(served, client, ray_client):
    url, proc = served
    before = placement(ray_client, proc.pid)
    killed_replica_loses_nothing_and_returns(url, proc, client, lambda: os.kill(before[1][1], signal.SIGKILL))
    after = placement(ray_client, proc.pid)
    assert after[1][1] != before[1][1]  # a new process
    assert after[1][0] == before[1][0]  # in the replica's reservation, on the same node
    assert after[0] == before[0]  # the other replica untouched


def test_a_replacement_that_dies_while_loading_is_tried_again(served, client, ray_client):
    import time

    import httpx

    url, proc = served
    first = placement(ray_client, proc.pid)[1][1]
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:  # the replacement actor exists (and loads the model) before the replica is ready
        try:
            second = placement(ray_client, proc.pid)[1][1]
        except Exception:  # between the old actor's end and the new one's name
            second = first
        if second != first:
            break
        assert time.monotonic() < deadline, "no replacement actor"
        time.sleep(0.1)
    assert httpx.get(f"{url}/health").json()["down"]  # still loading
    os.kill(second, signal.SIGKILL)
    deadline = time.monotonic() + 180
    while httpx.get(f"{url}/health").json().get("down"):
        assert time.monotonic() < deadline, "the replica did not come back after a failed restart"
        time.sleep(0.5)
    third = placement(ray_client, proc.pid)[1][1]
    assert third not in (first, second)
    assert "Paris" in client.completions.create(model="m", prompt="The capital of France is", max_tokens=8,
                                                temperature=0).choices[0].text  # fmt: skip
