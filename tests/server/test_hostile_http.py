"""Hostile clients against a real `atom serve` over real sockets: oversized bodies, bad encodings, loose
types, unbounded metric labels, slow and idle sockets, too many connections, a large prompt, and what a
client gets at the shutdown deadline."""

from __future__ import annotations

import json
import signal
import socket
import threading
import time

import httpx
import pytest
from openai import BadRequestError, OpenAI

from .conftest import running_server, server_log

KEY = "sk-hostile"
AUTH = {"Authorization": f"Bearer {KEY}"}
LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def guarded(smollm2):
    args = ("--max-model-len", "512", "--api-key", KEY, "--max-request-body-bytes", str(LIMIT))
    args += ("--header-timeout", "1", "--idle-timeout", "1", "--max-connections", "24")
    with running_server(smollm2, *args) as (url, proc):
        yield url


def post(url: str, path: str, **kw) -> httpx.Response:
    return httpx.post(f"{url}{path}", headers={**AUTH, **kw.pop("headers", {})}, timeout=60, **kw)


def assert_openai_error(r: httpx.Response, status: int, text: str = "") -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and text in err["message"], err
    return err


def test_a_body_over_the_limit_is_413_before_it_is_read(guarded):
    body = json.dumps({"prompt": "x" * (LIMIT * 4), "max_tokens": 1}).encode()
    assert_openai_error(post(guarded, "/v1/completions", content=body), 413, "--max-request-body-bytes")

    def chunks():  # no Content-Length: the server must stop reading at the limit
        for _ in range(1000):
            yield b" " * 4096

    start = time.monotonic()
    r = post(guarded, "/v1/completions", content=chunks(), headers={"Content-Type": "application/json"})
    assert_openai_error(r, 413)
    assert time.monotonic() - start < 30
    assert httpx.get(f"{guarded}/health").status_code == 200


@pytest.mark.parametrize(
    "path,body,param",
    [
        ("/v1/completions", {"prompt": "hi", "stop": ["s"] * 17}, "stop"),
        ("/v1/completions", {"prompt": "hi", "stop": "x" * 257}, "stop"),
        ("/v1/completions", {"prompt": "hi", "stop_token_ids": list(range(257))}, "stop_token_ids"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "a"}] * 2049}, "messages"),
        ("/v1/completions", {"prompt": "hi", "max_tokens": "5"}, "max_tokens"),
        ("/v1/completions", {"prompt": [1, True, 3]}, "prompt"),
        ("/v1/completions", {"prompt": "hi", "stop_token_ids": [True]}, "stop_token_ids"),
        ("/v1/completions", {"prompt": "hi", "n": 1.0}, "n"),
        ("/v1/completions", {"prompt": "hi", "stream": "true"}, "stream"),
        ("/v1/completions", {"prompt": "hi", "stream_options": {"include_usage": True}}, "stream_options"),
        (
            "/v1/chat/completions",
            {"messages": [{"role": "user", "content": "a"}], "top_logprobs": 2},
            "top_logprobs",
        ),
    ],
)
def test_limits_types_and_field_combinations_are_400(guarded, path, body, param):
    err = assert_openai_error(post(guarded, path, json=body), 400, "")
    assert err["type"] == "invalid_request_error" and param in err["message"], err


@pytest.mark.parametrize(
    "content",
    [
        b'{"prompt": "caf\xe9", "max_tokens": 1}',  # latin-1, not UTF-8
        b'{"prompt": "\xff\xfe", "max_tokens": 1}',
        b'{"prompt": "\\ud800", "max_tokens": 1}',  # a lone surrogate, as a JSON escape
        b'{"prompt": ["ok", "\\udfff"], "max_tokens": 1}',
        b'{"prompt": "hi", "stop": "\\ud83d", "max_tokens": 1}',
    ],
)
def test_invalid_utf8_and_lone_surrogates_are_400(guarded, content):
    r = post(guarded, "/v1/completions", content=content, headers={"Content-Type": "application/json"})
    assert_openai_error(r, 400)


def test_limits_reach_the_openai_client_as_bad_request(guarded):
    client = OpenAI(base_url=f"{guarded}/v1", api_key=KEY, max_retries=0)
    with pytest.raises(BadRequestError, match="top_logprobs is only allowed with logprobs"):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "a"}], top_logprobs=2)
    with pytest.raises(BadRequestError, match="stop"):
        client.completions.create(model="m", prompt="a", stop=[str(i) for i in range(17)])


def test_unknown_paths_and_401s_add_no_metric_series(guarded):
    before = httpx.get(f"{guarded}/metrics").text
    for i in range(30):
        assert_openai_error(httpx.get(f"{guarded}/random-{i}"), 404)
        assert httpx.post(f"{guarded}/v1/nope-{i}", json={}).status_code == 401
        assert httpx.get(f"{guarded}/v1/models/m-{i}", headers=AUTH).status_code == 404
    after = httpx.get(f"{guarded}/metrics").text
    series = [line for line in after.splitlines() if line.startswith("atom_requests_total")]
    assert not any("random-" in s or "nope-" in s or "/m-" in s for s in series), series
    assert len(after.splitlines()) == len(before.splitlines())

    def unauthorized(text: str) -> float:
        return float(
            next(ln for ln in text.splitlines() if ln.startswith("atom_unauthorized_requests_total")).split()[
                1
            ]
        )

    assert unauthorized(after) - unauthorized(before) == 30


def test_slow_and_idle_sockets_are_closed(guarded):
    host, port = guarded.removeprefix("http://").split(":")

    def closed_within(sock: socket.socket, seconds: float) -> bool:
        sock.settimeout(seconds)
        try:
            return sock.recv(1024) == b""
        except TimeoutError:
            return False

    silent = socket.create_connection((host, int(port)))  # connects, sends nothing
    slow = socket.create_connection((host, int(port)))  # starts headers, never finishes
    slow.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n")
    idle = socket.create_connection((host, int(port)))  # one request, then keeps the socket idle
    idle.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    idle.settimeout(5)
    response = b""
    while b'{"status":"ok"}' not in response:
        response += idle.recv(4096)
    assert b"200 OK" in response
    for sock in (silent, slow, idle):
        assert closed_within(sock, 5), "the server kept the socket open"
        sock.close()


def test_connections_past_the_cap_are_refused_with_503(guarded):
    host, port = guarded.removeprefix("http://").split(":")
    held = [socket.create_connection((host, int(port))) for _ in range(24)]
    try:
        time.sleep(0.2)
        r = httpx.get(f"{guarded}/health", timeout=10)
        assert r.status_code == 503
    finally:
        for s in held:
            s.close()
    time.sleep(0.3)
    assert httpx.get(f"{guarded}/health").status_code == 200


def test_a_large_prompt_does_not_delay_other_clients(smollm2):
    """A prompt just under the body limit is tokenized off the event loop (and off the GIL)."""
    with running_server(smollm2, "--max-model-len", "512") as (url, _):
        prompt = "hello world, the quick brown fox. " * 200_000  # 6.8 MB: seconds of tokenizing
        result: dict = {}
        sender = threading.Thread(
            target=lambda: result.update(
                r=httpx.post(f"{url}/v1/completions", json={"prompt": prompt}, timeout=120)
            )
        )
        sender.start()
        latencies = []
        while sender.is_alive():
            start = time.monotonic()
            assert httpx.get(f"{url}/health", timeout=30).status_code == 200
            latencies.append(time.monotonic() - start)
            time.sleep(0.05)
        assert_openai_error(result["r"], 400, "context length")
        assert len(latencies) > 10, "tokenizing was too quick to tell anything"
        assert max(latencies) < 1.0, f"/health waited {max(latencies):.2f} s behind a tokenizing prompt"


def test_at_the_shutdown_deadline_requests_get_503_and_streams_end_cleanly(smollm2):
    long = {"prompt": "Count to a thousand:", "max_tokens": 400, "ignore_eos": True}
    with running_server(smollm2, "--max-model-len", "512", "--shutdown-timeout", "2") as (url, proc):
        results: dict = {}

        def plain():
            results["plain"] = httpx.post(f"{url}/v1/completions", json=long, timeout=60)

        def stream():
            with httpx.stream(
                "POST", f"{url}/v1/completions", json={**long, "stream": True}, timeout=60
            ) as r:
                results["events"] = [line for line in r.iter_lines() if line]

        threads = [threading.Thread(target=plain), threading.Thread(target=stream)]
        for t in threads:
            t.start()
        while "atom_num_requests_running 2.0" not in httpx.get(f"{url}/metrics").text:
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(timeout=60)
        assert proc.wait(timeout=30) == 0
        log = server_log(proc)
    assert_openai_error(results["plain"], 503, "shutting down")
    events = results["events"]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2].removeprefix("data: "))["error"]["type"] == "service_unavailable"
    assert "Traceback" not in log and "never retrieved" not in log, log[-3000:]
