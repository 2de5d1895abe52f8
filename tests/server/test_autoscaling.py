"""Autoscaling end to end (processes on this host, SmolLM2, CPU): a server started with one replica and
--max-data-parallel-size 2 adds the second while requests queue, routes new requests to it, and retires it
once it has been idle; every request finishes with the same greedy answer."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from openai import OpenAI

from .conftest import running_server
from .replicas import QUESTIONS, ask, metric


@pytest.fixture(scope="module")
def served(smollm2):
    args = ("--max-model-len", "512", "--max-num-seqs", "1", "--max-data-parallel-size", "2",
            "--autoscale-queue-depth", "2", "--autoscale-idle-s", "4")  # fmt: skip
    with running_server(smollm2, *args) as (url, proc):
        yield url, proc


def wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.5)


def test_a_queue_adds_a_replica_and_idleness_retires_it(served):
    url, _ = served
    client = OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=300)
    expected = {q: ask(client, q, max_tokens=40) for q in QUESTIONS}  # one replica, one at a time
    assert metric(url, "atom_replica_up") == {'replica="0"': 1.0}

    def replicas_up() -> int:
        return int(sum(metric(url, "atom_replica_up").values()))

    with ThreadPoolExecutor(12) as pool:  # one sequence at a time per replica: 11 wait
        first = [pool.submit(ask, client, q, None, 40) for q in QUESTIONS * 2]
        wait_for(lambda: replicas_up() == 2, 120, "no replica was added while requests queued")
        later = [pool.submit(ask, client, q, None, 40) for q in QUESTIONS]
        answers = [f.result(timeout=300) for f in first + later]
    assert answers == [expected[q] for q in QUESTIONS * 3]  # greedy: whichever replica answered
    routed = metric(url, "atom_replica_routed_requests")
    assert sum(v for k, v in routed.items() if 'replica="1"' in k) > 0  # the new replica served some
    wait_for(lambda: replicas_up() == 1, 60, "the idle replica was not retired")
    assert httpx.get(f"{url}/health").json()["status"] == "ok"
    assert ask(client, QUESTIONS[0], max_tokens=40) == expected[QUESTIONS[0]]
