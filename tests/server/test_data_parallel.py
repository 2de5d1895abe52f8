"""Data parallelism on one machine: `atom serve --data-parallel-size 2` runs two engine cores behind one
endpoint (SmolLM2, CPU). The official openai client gets the same greedy answers as from one engine;
requests that share a long prefix land on the replica that holds it (the router's metric and that
replica's cache hits say so); a replica killed mid-traffic fails no request silently (each finishes or
gets a retryable 503), and comes back."""

from __future__ import annotations

import os
import re
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest
from openai import OpenAI

from .conftest import running_server

SYSTEM = "You are a careful assistant who answers in one short sentence. " * 12  # several KV blocks


@pytest.fixture(scope="module")
def served(smollm2):
    with running_server(smollm2, "--max-model-len", "512", "--data-parallel-size", "2") as (url, proc):
        yield url, proc


@pytest.fixture(scope="module")
def client(served):
    return OpenAI(base_url=f"{served[0]}/v1", api_key="x", max_retries=0, timeout=120)


def metric(url: str, name: str) -> dict[str, float]:
    """{labels: value} of one metric family."""
    text = httpx.get(f"{url}/metrics").text
    return {m[0]: float(m[1]) for m in re.findall(rf"^{name}\{{(.*)\}} (\S+)$", text, re.M)}


def ask(client, question: str, system: str | None = None, max_tokens: int = 12) -> str:
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": question}
    ]
    reply = client.chat.completions.create(model="m", messages=messages, max_tokens=max_tokens, temperature=0)
    return reply.choices[0].message.content


QUESTIONS = ["What is 2 + 2?", "Name a fruit.", "What color is the sky?", "Say hello.", "Count to three.", "Name a dog breed."]  # fmt: skip


def test_two_replicas_answer_as_one_engine_does(served, client):
    one_by_one = [ask(client, q) for q in QUESTIONS]
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        together = list(pool.map(lambda q: ask(client, q), QUESTIONS))
    assert together == one_by_one  # greedy: the same tokens whichever replica computed them
    health = httpx.get(f"{served[0]}/health").json()
    assert health == {"status": "ok", "replicas": 2, "down": {}}
    routed = metric(served[0], "atom_replica_routed_requests")
    assert {re.search(r'replica="(\d)"', k).group(1) for k in routed} == {"0", "1"}  # both served


def test_a_shared_prefix_lands_on_the_replica_that_holds_it(served, client):
    before = metric(served[0], "atom_replica_routed_requests")
    for q in QUESTIONS[:4]:
        ask(client, q, system=SYSTEM)
    after = metric(served[0], "atom_replica_routed_requests")
    gained = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    prefix = {k: v for k, v in gained.items() if 'reason="prefix"' in k}
    assert len(prefix) == 1 and sum(prefix.values()) >= 3, gained  # all after the first: one replica
    holder = re.search(r'replica="(\d)"', next(iter(prefix))).group(1)
    hits = metric(served[0], "atom_replica_prefix_cache_hit_rate")
    assert hits[f'replica="{holder}"'] > 0


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

    def stream(q: str) -> str:
        try:
            chunks = client.chat.completions.create(
                model="m",
                messages=[{"role": "user", "content": q}],
                max_tokens=48,
                temperature=0,
                stream=True,
            )
            reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
            return "finished" if reasons else "no finish"
        except openai.APIStatusError as e:  # before streaming: a 503 that says retry
            return "retry" if e.status_code == 503 and "retry" in e.message else f"status {e.status_code}"
        except openai.APIError as e:  # an error event mid-stream
            return "retry" if "retry" in str(e) else f"error {e}"

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(stream, q) for q in QUESTIONS + QUESTIONS[:2]]
        time.sleep(0.5)
        os.kill(pids[1], signal.SIGKILL)
        outcomes = [f.result(timeout=120) for f in futures]  # none hangs
    assert set(outcomes) <= {"finished", "retry"}, outcomes
    assert outcomes.count("finished") >= 1
    assert proc.poll() is None  # one replica going is not the server going
    deadline = time.monotonic() + 120
    while httpx.get(f"{url}/health").json().get("down"):
        assert time.monotonic() < deadline, "the replica did not come back"
        time.sleep(0.5)
    assert metric(url, "atom_replica_up") == {'replica="0"': 1.0, 'replica="1"': 1.0}
    assert ask(client, QUESTIONS[0])  # and serves again
