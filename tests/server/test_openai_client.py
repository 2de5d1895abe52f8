"""The official openai client against a running `atom serve`."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import OpenAI

from .conftest import running_server


@pytest.fixture(scope="module")
def client(server):
    return OpenAI(base_url=f"{server}/v1", api_key="sk-test", max_retries=0)


def test_models(client):
    models = client.models.list().data
    assert len(models) == 1 and models[0].id == "smollm2-135m"
    assert client.models.retrieve("smollm2-135m").id == "smollm2-135m"
    with pytest.raises(openai.NotFoundError, match="'gpt-4' is not served here"):
        client.models.retrieve("gpt-4")


def test_chat_answers_paris(client):
    r = client.chat.completions.create(
        model="smollm2-135m",
        temperature=0,
        max_tokens=24,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    assert "Paris" in r.choices[0].message.content
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.completion_tokens > 0 and r.usage.prompt_tokens > 10


def test_served_model_name_is_the_id_clients_see(smollm2):
    with running_server(smollm2, "--served-model-name", "demo/smol") as (url, _):
        named = OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
        assert [m.id for m in named.models.list().data] == ["demo/smol"]
        assert named.models.retrieve("demo/smol").id == "demo/smol"
        assert named.completions.create(model="demo/smol", prompt="Hi", max_tokens=2).model == "demo/smol"


def test_chat_content_as_text_parts_is_the_joined_text(client):
    parts = [{"type": "text", "text": "What is the capital"}, {"type": "text", "text": "of France?"}]
    as_parts, as_text = (
        client.chat.completions.create(
            model="m", temperature=0, max_tokens=12, messages=[{"role": "user", "content": content}]
        )
        for content in (parts, "What is the capital\nof France?")
    )
    assert as_parts.choices[0].message.content == as_text.choices[0].message.content
    assert as_parts.usage.prompt_tokens == as_text.usage.prompt_tokens


def test_chat_image_part_is_a_clear_400(client):
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(
            model="m", max_tokens=4, messages=[{"role": "user", "content": [image]}]
        )
    assert "messages.0.content" in str(err.value) and "type 'image_url'" in str(err.value)


def test_chat_stream_matches_non_stream_and_reports_usage(client):
    messages = [{"role": "user", "content": "Name a large animal."}]
    full = client.chat.completions.create(model="m", temperature=0, max_tokens=16, messages=messages)
    chunks = list(
        client.chat.completions.create(
            model="m",
            temperature=0,
            max_tokens=16,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens


def test_completion_stream_and_logprobs(client):
    r = client.completions.create(
        model="m", prompt="The capital of Italy is", max_tokens=8, temperature=0, logprobs=3
    )
    assert len(r.choices[0].logprobs.token_logprobs) == r.usage.completion_tokens
    assert all(len(t) == 3 for t in r.choices[0].logprobs.top_logprobs)
    streamed = "".join(
        c.choices[0].text
        for c in client.completions.create(
            model="m", prompt="The capital of Italy is", max_tokens=8, temperature=0, stream=True
        )
    )
    assert streamed == r.choices[0].text


def test_n_seed_stop_and_penalties(client):
    request = dict(
        model="m",
        prompt="Once upon a time",
        max_tokens=12,
        temperature=0.9,
        n=2,
        seed=3,
        presence_penalty=0.5,
        frequency_penalty=0.5,
        extra_body={"top_k": 40, "min_p": 0.05, "repetition_penalty": 1.1},
    )
    r = client.completions.create(**request)
    again = client.completions.create(**request)
    assert [c.text for c in r.choices] == [c.text for c in again.choices]
    stopped = client.completions.create(
        model="m", prompt="1, 2, 3, 4,", max_tokens=20, temperature=0, stop=[","]
    )
    assert "," not in stopped.choices[0].text and stopped.choices[0].finish_reason == "stop"


def test_wrong_or_missing_api_key_is_401(server):
    bad = OpenAI(base_url=f"{server}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    assert httpx.get(f"{server}/v1/models").status_code == 401
    assert httpx.get(f"{server}/health").status_code == 200  # health needs no key


def test_batched_prompts_give_n_choices_each_in_order(client):
    prompts = ["The capital of France is", "One, two, three,"]
    singles = [
        client.completions.create(
            model="m", prompt=p, max_tokens=6, temperature=0, extra_body={"ignore_eos": True}
        )
        for p in prompts
    ]
    batch = client.completions.create(
        model="m", prompt=prompts, n=2, max_tokens=6, temperature=0, extra_body={"ignore_eos": True}
    )
    assert [c.index for c in batch.choices] == [0, 1, 2, 3]
    assert [c.text for c in batch.choices] == [singles[0].choices[0].text] * 2 + [
        singles[1].choices[0].text
    ] * 2
    assert batch.usage.prompt_tokens == sum(s.usage.prompt_tokens for s in singles)
    assert batch.usage.completion_tokens == 4 * 6
    streamed = {}
    for chunk in client.completions.create(
        model="m",
        prompt=prompts,
        n=2,
        max_tokens=6,
        temperature=0,
        stream=True,
        extra_body={"ignore_eos": True},
    ):
        for c in chunk.choices:
            streamed[c.index] = streamed.get(c.index, "") + c.text
    assert [streamed[i] for i in range(4)] == [c.text for c in batch.choices]
    token_batch = client.completions.create(
        model="m", prompt=[[504, 3575], [504]], max_tokens=2, temperature=0
    )
    assert len(token_batch.choices) == 2


def test_a_bad_prompt_in_a_batch_is_named(client):
    with pytest.raises(openai.BadRequestError, match="prompt 1: the prompt is empty"):
        client.completions.create(model="m", prompt=["fine", ""], max_tokens=2)
