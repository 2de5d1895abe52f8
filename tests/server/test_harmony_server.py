"""gpt-oss's Harmony end to end: a small random gpt-oss whose tokenizer has Harmony's special tokens and
whose template is gpt-oss's real one, served by `atom serve`, asked through the official openai client.
Random weights say nothing sensible, so what is checked is what must hold whatever they say: a
required or named call is a Harmony call the parser reads into a valid tool call (decoding is
constrained to it), whatever else they write never makes a 500, reasoning and content are told apart
in streams as in whole answers, and a conversation with tool results renders and goes on."""

from __future__ import annotations

import json

import jsonschema
import pytest
from openai import OpenAI

from .conftest import running_server

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12}, "unit": {"enum": ["c", "f"]}},
            "required": ["city", "unit"],
        },
    },
}
MESSAGES = [{"role": "user", "content": "Weather in Oslo?"}]


@pytest.fixture(scope="module")
def client(tiny_gpt_oss_harmony):
    with running_server(tiny_gpt_oss_harmony, "--max-model-len", "2048") as (url, _):
        yield OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)


def chat(client, **kw):
    return client.chat.completions.create(model="gpt-oss", messages=kw.pop("messages", MESSAGES), **kw)


@pytest.mark.parametrize(
    "tool_choice", ["required", {"type": "function", "function": {"name": "get_weather"}}]
)
@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_a_forced_call_is_a_valid_tool_call(client, tool_choice, temperature):
    reply = chat(
        client, tools=[WEATHER], tool_choice=tool_choice, temperature=temperature, seed=1, max_tokens=60
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls", choice
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    jsonschema.validate(json.loads(call.function.arguments), WEATHER["function"]["parameters"])


def test_streamed_call_equals_the_whole_one(client):
    kw = {"tools": [WEATHER], "tool_choice": "required", "temperature": 0, "max_tokens": 60}
    whole = chat(client, **kw).choices[0].message.tool_calls[0]
    chunks = list(chat(client, stream=True, **kw))
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert [(c.index, c.function.name, c.function.arguments) for c in calls] == [
        (0, "get_weather", whole.function.arguments)
    ]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("effort", ["low", "high"])
def test_free_answers_never_fail_and_stream_as_they_answer(client, effort):
    """Whatever random weights write (Harmony or not), the answer is a 200, and the streamed reasoning
    and content add up to the whole answer's."""
    kw = {"tools": [WEATHER], "reasoning_effort": effort, "temperature": 0, "max_tokens": 40}
    whole = chat(client, **kw).choices[0]
    chunks = [c.choices[0] for c in chat(client, stream=True, **kw) if c.choices]
    streamed_content = "".join(c.delta.content or "" for c in chunks)
    streamed_reasoning = "".join(getattr(c.delta, "reasoning_content", None) or "" for c in chunks)
    assert streamed_content == (whole.message.content or "")
    assert streamed_reasoning == (getattr(whole.message, "reasoning_content", None) or "")
    assert chunks[-1].finish_reason == whole.finish_reason


def test_a_tool_without_description_or_parameters_renders_and_is_called(client):
    bare = {"type": "function", "function": {"name": "clock"}}  # both are optional in OpenAI's API
    reply = chat(client, tools=[bare], tool_choice="required", temperature=0, max_tokens=20)
    (call,) = reply.choices[0].message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("clock", {})


def test_a_conversation_with_a_tool_result_goes_on(client):
    first = (
        chat(client, tools=[WEATHER], tool_choice="required", temperature=0, max_tokens=60).choices[0].message
    )
    messages = [*MESSAGES, first, {"role": "tool", "tool_call_id": first.tool_calls[0].id, "content": "-3 C"}]
    reply = chat(client, messages=messages, tools=[WEATHER], temperature=0, max_tokens=20)
    assert reply.choices[0].finish_reason in ("stop", "length", "tool_calls")
