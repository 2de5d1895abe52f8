"""The engine core runs in its own process: if it dies the server says so and exits non-zero; while it
generates 16 streams and a 1 MB prompt is tokenized, /health still answers at once."""

from __future__ import annotations

import os
import signal
import statistics
import threading
import time
from pathlib import Path

import httpx

from .conftest import running_server, server_log


def core_pid(server_pid: int) -> int:
    """The server's child running the engine core (spawned: a python process of its own)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        cmdline = stat.parent.joinpath("cmdline").read_bytes()
        if int(fields[1]) == server_pid and b"spawn_main" in cmdline:  # not the resource tracker
            return int(stat.parent.name)
    raise AssertionError(f"no engine-core child of {server_pid}")


def test_a_dead_core_turns_health_failed_requests_503_and_the_server_exits_1(smollm2):
    with running_server(smollm2, "--max-model-len", "256") as (url, proc):
        streaming = {}

        def stream():
            body = {"prompt": "Once upon a time", "max_tokens": 200, "ignore_eos": True, "stream": True}
            with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as r:
                streaming["lines"] = [line for line in r.iter_lines() if line]

        thread = threading.Thread(target=stream)
        thread.start()
        while "atom_num_requests_running 1.0" not in httpx.get(f"{url}/metrics").text:
            time.sleep(0.05)
        os.kill(core_pid(proc.pid), signal.SIGKILL)
        thread.join(timeout=30)
        assert proc.wait(timeout=30) == 1, "the server must exit non-zero when its engine core dies"
        log = server_log(proc)
    assert "the engine core process exited" in log
    lines = streaming["lines"]
    assert lines[-1] == "data: [DONE]" and '"error"' in lines[-2], lines[-3:]


def test_health_answers_promptly_while_the_core_works(smollm2):
    with running_server(smollm2, "--max-model-len", "512") as (url, _):
        body = {"prompt": "Tell me a story.", "max_tokens": 120, "ignore_eos": True, "stream": True}

        def stream():
            with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=120) as r:
                for _ in r.iter_lines():
                    pass

        def big_prompt():  # 1 MB of text: tokenized (then refused as too long) in the API process
            httpx.post(f"{url}/v1/completions", json={"prompt": "word " * 200_000}, timeout=120)

        workers = [threading.Thread(target=stream) for _ in range(16)] + [threading.Thread(target=big_prompt)]
        for w in workers:
            w.start()
        while "atom_num_requests_running 16.0" not in httpx.get(f"{url}/metrics").text:
            time.sleep(0.05)
        latencies = []
        with httpx.Client() as client:
            while any(w.is_alive() for w in workers) and len(latencies) < 200:
                start = time.perf_counter()
                assert client.get(f"{url}/health").status_code == 200
                latencies.append(time.perf_counter() - start)
                time.sleep(0.02)
        for w in workers:
            w.join()
        p99 = statistics.quantiles(latencies, n=100)[98]
        print(f"/health under load: n={len(latencies)} median={statistics.median(latencies) * 1000:.1f} ms "
              f"p99={p99 * 1000:.1f} ms")  # fmt: skip
        assert len(latencies) >= 50 and p99 < 0.1, f"/health p99 {p99 * 1000:.0f} ms"
