"""What real clients send and parse: streaming logprobs, null as the default, usage in every chunk,
min_tokens, logit_bias, the fields OpenAI has that we accept or refuse by name, system_fingerprint, and
every body and chunk valid under the openai client's own pydantic models in strict mode."""

from __future__ import annotations

import json

import httpx
import pytest
from openai import OpenAI
from openai.types import Completion, Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk

AUTH = {"Authorization": "Bearer sk-test"}
MESSAGES = [{"role": "user", "content": "Name three colors."}]


@pytest.fixture(scope="module")
def client(server):
    return OpenAI(base_url=f"{server}/v1", api_key="sk-test", max_retries=0)


def post(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server}{path}", headers=AUTH, json=body, timeout=120)


def stream_chunks(server, path: str, body: dict) -> list[dict]:
    chunks = []
    with httpx.stream(
        "POST", f"{server}{path}", headers=AUTH, json={**body, "stream": True}, timeout=120
    ) as r:
        assert r.status_code == 200, r.read()
        for line in r.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                chunks.append(json.loads(line[6:]))
    return chunks


def test_chat_streams_the_same_logprobs_it_returns_whole(client):
    args = dict(model="m", messages=MESSAGES, max_tokens=8, temperature=0, logprobs=True, top_logprobs=2)
    whole = client.chat.completions.create(**args).choices[0].logprobs.content
    streamed = []
    for chunk in client.chat.completions.create(**args, stream=True):
        if chunk.choices and chunk.choices[0].logprobs:
            streamed += chunk.choices[0].logprobs.content
    assert [e.token for e in streamed] == [e.token for e in whole] and len(whole) == 8
    assert [e.logprob for e in streamed] == pytest.approx([e.logprob for e in whole], abs=1e-4)
    assert all(len(e.top_logprobs) == 2 for e in streamed)


def test_completions_stream_logprobs_with_text_offsets(client):
    args = dict(model="m", prompt="The sky is", max_tokens=8, temperature=0, logprobs=1)
    whole = client.completions.create(**args).choices[0]
    tokens, offsets, text = [], [], ""
    for chunk in client.completions.create(**args, stream=True):
        if chunk.choices and chunk.choices[0].logprobs:
            tokens += chunk.choices[0].logprobs.tokens
            offsets += chunk.choices[0].logprobs.text_offset
        text += chunk.choices[0].text if chunk.choices else ""
    assert tokens == whole.logprobs.tokens and offsets == whole.logprobs.text_offset
    assert text == whole.text == "".join(tokens)
    assert offsets == [len("".join(tokens[:i])) for i in range(len(tokens))]


def test_null_means_the_default(server):
    fields = (
        "temperature",
        "top_p",
        "n",
        "presence_penalty",
        "frequency_penalty",
        "logprobs",
        "stream",
        "top_k",
    )
    base = {"prompt": "Once upon a time", "max_tokens": 6, "seed": 7}
    plain = post(server, "/v1/completions", base)
    nulls = post(server, "/v1/completions", {**base, **dict.fromkeys(fields)})
    assert nulls.status_code == 200, nulls.text
    assert nulls.json()["choices"][0]["text"] == plain.json()["choices"][0]["text"]
    chat = post(
        server,
        "/v1/chat/completions",
        {
            "messages": MESSAGES,
            "max_tokens": 2,
            "logprobs": None,
            "stream_options": None,
            "temperature": None,
        },
    )
    assert chat.status_code == 200, chat.text


def test_continuous_usage_stats_put_usage_in_every_chunk(server):
    options = {"include_usage": True, "continuous_usage_stats": True}
    body = {"prompt": "Hello", "max_tokens": 5, "ignore_eos": True, "stream_options": options}
    chunks = stream_chunks(server, "/v1/completions", body)
    counts = [c["usage"]["completion_tokens"] for c in chunks]
    assert all("usage" in c for c in chunks) and counts == sorted(counts) and counts[-1] == 5
    assert all(c["usage"]["prompt_tokens"] == chunks[0]["usage"]["prompt_tokens"] for c in chunks)


def test_min_tokens_keeps_a_stop_token_from_ending_early(server):
    greedy = {"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0, "logprobs": 0}
    first = post(server, "/v1/completions", greedy).json()["choices"][0]
    first_id = token_id(first["logprobs"]["tokens"][0])
    stopped = post(server, "/v1/completions", {**greedy, "stop_token_ids": [first_id]}).json()
    assert stopped["usage"]["completion_tokens"] == 1  # the stop token itself ends it at once
    held = post(server, "/v1/completions", {**greedy, "stop_token_ids": [first_id], "min_tokens": 3}).json()
    assert held["usage"]["completion_tokens"] >= 3
    assert held["choices"][0]["logprobs"]["tokens"][0] != first["logprobs"]["tokens"][0]


def tokenizer():
    """The tokenizer the server uses (SmolLM2's), loaded here the same way."""
    from atom.tokenizer import load_tokenizer
    from atom_build.demo_model import ensure_demo_model

    return load_tokenizer(ensure_demo_model(), "auto")


def token_id(token_text: str) -> int:
    ids = tokenizer().encode(token_text)
    assert len(ids) == 1, (token_text, ids)
    return ids[0]


def test_logit_bias_steers_every_token(server):
    body = {"prompt": "Once upon a time", "max_tokens": 4, "temperature": 0, "ignore_eos": True}
    plain = post(server, "/v1/completions", {**body, "logprobs": 0}).json()["choices"][0]
    forced = post(server, "/v1/completions", {**body, "logit_bias": {"28": 100}}).json()["choices"][0]
    assert forced["text"] == tokenizer().decode([28]) * 4  # pushed to the top, every step
    banned_text = plain["logprobs"]["tokens"][0]
    banned = post(
        server,
        "/v1/completions",
        {**body, "logprobs": 0, "logit_bias": {str(token_id(banned_text)): -100}},
    )
    assert banned.json()["choices"][0]["logprobs"]["tokens"][0] != banned_text


@pytest.mark.parametrize(
    "field,value,says",
    [
        ("functions", [{"name": "f"}], "deprecated by OpenAI for tools"),
        ("response_format", {"type": "json_schema", "json_schema": {"schema": {"not": {}}}}, "not supported"),
        ("store", True, "keeps no record"),
        ("reasoning_effort", "extreme", "'low', 'medium' or 'high'"),
    ],
)
def test_unsupported_openai_fields_are_named(server, field, value, says):
    r = post(server, "/v1/chat/completions", {"messages": MESSAGES, field: value})
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["param"] == field and says in err["message"] and err["code"] is None


def test_accepted_fields_that_change_nothing(server):
    extras = {
        "metadata": {"team": "infra"},
        "service_tier": "auto",
        "parallel_tool_calls": False,
        "tools": [],
        "tool_choice": "none",
        "response_format": {"type": "text"},
        "store": False,
    }
    r = post(server, "/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 2, **extras})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "message,says",
    [
        ({"role": "tool", "content": "42"}, "needs tool_call_id"),
        ({"role": "function", "content": "42", "name": "f"}, "send role 'tool'"),
        (
            {
                "role": "user",
                "content": "hi",
                "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{}"}}],
            },
            "only assistant messages carry tool_calls",
        ),
        ({"role": "user"}, "needs content"),
    ],
)
def test_malformed_tool_conversation_messages_say_why(server, message, says):
    r = post(server, "/v1/chat/completions", {"messages": [*MESSAGES, message]})
    assert r.status_code == 400 and says in r.json()["error"]["message"], r.text


def test_every_body_and_chunk_parses_strictly_with_the_openai_models(server):
    """The openai client's models, strict: a wrong type or a missing required field fails here."""
    chat = post(server, "/v1/chat/completions", {"messages": MESSAGES, "max_tokens": 3, "logprobs": True})
    parsed = ChatCompletion.model_validate(chat.json(), strict=True)
    assert parsed.system_fingerprint.startswith("fp_")
    completion = post(server, "/v1/completions", {"prompt": "Hi", "max_tokens": 3, "logprobs": 2})
    assert (
        Completion.model_validate(completion.json(), strict=True).system_fingerprint
        == parsed.system_fingerprint
    )
    options = {"include_usage": True}
    for chunk in stream_chunks(
        server,
        "/v1/chat/completions",
        {"messages": MESSAGES, "max_tokens": 3, "logprobs": True, "stream_options": options},
    ):
        assert (
            ChatCompletionChunk.model_validate(chunk, strict=True).system_fingerprint
            == parsed.system_fingerprint
        )
    for chunk in stream_chunks(
        server, "/v1/completions", {"prompt": "Hi", "max_tokens": 3, "stream_options": options}
    ):
        # the client reuses Completion for chunks, whose finish_reason is null until the last (as OpenAI's
        # own stream sends it); everything else is checked strictly
        for choice in chunk["choices"]:
            choice["finish_reason"] = choice["finish_reason"] or "length"
        Completion.model_validate(chunk, strict=True)
    listing = httpx.get(f"{server}/v1/models", headers=AUTH).json()["data"]
    model = Model.model_validate(listing[0], strict=True)
    assert model.created > 1_700_000_000 and model.owned_by == "atom"


def test_error_codes_are_strings_or_null(server):
    unauthorized = httpx.post(f"{server}/v1/completions", json={"prompt": "x"}, timeout=10).json()["error"]
    assert unauthorized["code"] == "invalid_api_key"
    bad = post(server, "/v1/completions", {"prompt": "x", "temperature": 9}).json()["error"]
    assert bad["code"] is None and bad["param"] == "temperature"
