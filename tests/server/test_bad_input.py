"""Malformed and out-of-range requests get an OpenAI-style 400; the server stays healthy."""

from __future__ import annotations

import httpx
import pytest

AUTH = {"Authorization": "Bearer sk-test"}


def post(server, path, **kw):
    return httpx.post(f"{server}{path}", headers={**AUTH, **kw.pop("headers", {})}, timeout=60, **kw)


@pytest.mark.parametrize(
    "body,param",
    [
        ({"prompt": "hi", "max_tokens": "ten"}, "max_tokens"),
        ({"prompt": "hi", "temperature": -1}, "temperature"),
        ({"prompt": "hi", "top_p": 1.5}, "top_p"),
        ({"prompt": "hi", "n": 0}, "n"),
        ({"prompt": "hi", "logit_bias": {"one": 2}}, "logit_bias"),  # keys are token ids
        ({"prompt": "hi", "logit_bias": {"1": 200}}, "logit_bias.1"),  # values in [-100, 100]
        ({"prompt": "hi", "logit_bias": {"999999": 1}}, "past the vocabulary"),
        ({"prompt": "hi", "tools": [{"type": "function"}]}, "tools"),  # unsupported: says so
        ({"prompt": "hi", "min_tokens": -1}, "min_tokens"),
        ({"prompt": "hi", "min_tokens": 5, "max_tokens": 2}, "min_tokens"),
        ({"prompt": "hi", "surprise": 1}, "surprise"),  # unknown: named
        ({"prompt": "hi", "echo": True}, "echo"),
        ({"max_tokens": 3}, "prompt"),
    ],
)
def test_bad_fields_are_400_with_error_body(server, body, param):
    r = post(server, "/v1/completions", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and param in err["message"]


def test_malformed_json_is_400(server):
    r = post(
        server,
        "/v1/chat/completions",
        content=b'{"messages": [',
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400 and "error" in r.json()


def test_prompt_over_context_names_both_lengths(server):
    r = post(server, "/v1/completions", json={"prompt": "hello " * 600, "max_tokens": 4})
    assert r.status_code == 400
    message = r.json()["error"]["message"]
    assert "601 tokens" in message or "600 tokens" in message
    assert "512" in message


def test_chat_with_bad_role_is_400(server):
    r = post(server, "/v1/chat/completions", json={"messages": [{"role": "robot", "content": "x"}]})
    assert r.status_code == 400
    assert httpx.get(f"{server}/health").status_code == 200


HUGE = 2**130  # beyond every fixed-width integer type


@pytest.mark.parametrize(
    "field,value,status",
    [
        ("top_k", HUGE, 200),  # more than the vocabulary keeps every token
        ("seed", HUGE, 400),
        ("seed", -HUGE, 400),
        ("max_tokens", HUGE, 400),
        ("stop_token_ids", [HUGE, -HUGE], 200),
        ("prompt", [HUGE], 400),
        ("logprobs", HUGE, 400),
        ("n", HUGE, 400),
    ],
)
def test_integers_beyond_int64_are_answered_not_crashed(server, field, value, status):
    # Found by schemathesis: a 37-digit top_k overflowed a tensor and gave a 500.
    body = {"prompt": "hi", "max_tokens": 2, field: value}
    r = post(server, "/v1/completions", json=body)
    assert r.status_code == status, r.text
    if status == 400:
        assert r.json()["error"]["type"] == "invalid_request_error"
        assert field in r.json()["error"]["message"] or field == "prompt"
    else:
        assert r.json()["usage"]["completion_tokens"] >= 1


def test_seed_at_the_int64_edge_with_n_choices(server):
    body = {"prompt": "hi", "max_tokens": 2, "seed": 2**63 - 1, "n": 3, "temperature": 1.0}
    r = post(server, "/v1/completions", json=body)
    assert r.status_code == 200, r.text
    assert len(r.json()["choices"]) == 3
