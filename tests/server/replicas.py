"""What every data-parallel server must do, whichever executor runs its replicas (processes on this host,
Ray actors): the checks the replica tests share."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai

SYSTEM = "You are a careful assistant who answers in one short sentence. " * 12  # several KV blocks


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


def answers_as_one_engine(url: str, client) -> None:
    """Concurrent greedy answers equal one-by-one answers; both replicas served some."""
    one_by_one = [ask(client, q) for q in QUESTIONS]
    with ThreadPoolExecutor(len(QUESTIONS)) as pool:
        together = list(pool.map(lambda q: ask(client, q), QUESTIONS))
    assert together == one_by_one  # greedy: the same tokens whichever replica computed them
    health = httpx.get(f"{url}/health").json()
    assert health == {"status": "ok", "replicas": 2, "down": {}}
    routed = metric(url, "atom_replica_routed_requests")
    assert {re.search(r'replica="(\d)"', k).group(1) for k in routed} == {"0", "1"}  # both served


def shared_prefix_lands_on_its_holder(url: str, client) -> None:
    before = metric(url, "atom_replica_routed_requests")
    for q in QUESTIONS[:4]:
        ask(client, q, system=SYSTEM)
    after = metric(url, "atom_replica_routed_requests")
    gained = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
    prefix = {k: v for k, v in gained.items() if 'reason="prefix"' in k}
    assert len(prefix) == 1 and sum(prefix.values()) >= 3, gained  # all after the first: one replica
    holder = re.search(r'replica="(\d)"', next(iter(prefix))).group(1)
    hits = metric(url, "atom_replica_prefix_cache_hit_rate")
    assert hits[f'replica="{holder}"'] > 0


def stream_outcome(client, question: str) -> str:
    """'finished', or 'retry' for a 503 / error event that says to retry; anything else is a failure."""
    try:
        chunks = client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": question}],
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


def killed_replica_loses_nothing_and_returns(url: str, proc, client, kill: Callable[[], None]) -> None:
    """kill() ends one replica's process while 8 streams run: none hangs, each finishes or says retry,
    the server stays, and the replica comes back and serves."""
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(stream_outcome, client, q) for q in QUESTIONS + QUESTIONS[:2]]
        time.sleep(0.5)
        kill()
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
