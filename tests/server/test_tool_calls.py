"""Tool calling through the official openai client against `atom serve` (SmolLM2, CPU). SmolLM2's
template knows no tools, so the server describes them in the system message and reads Hermes-style
`<tool_call>` blocks back; tool_choice required or named constrains decoding to that syntax around the
parameter schema, so every call parses and its arguments validate against the caller's schema,
whatever the 135M model would have said: greedy and sampled, streamed and whole."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel, Field

from .conftest import running_server

TOOLS = {
    "get_weather": {
        "description": "The current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "maxLength": 24},
                "unit": {"enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
        },
    },
    "book_flight": {  # nested object, array, integer bounds, optional field
        "description": "Book a flight",
        "parameters": {
            "type": "object",
            "properties": {
                "route": {
                    "type": "object",
                    "properties": {"from": {"type": "string", "maxLength": 3}, "to": {"type": "string", "maxLength": 3}},
                    "required": ["from", "to"],
                },
                "passengers": {"type": "integer", "minimum": 1, "maximum": 9},
                "meals": {"type": "array", "items": {"enum": ["veg", "fish", "none"]}, "maxItems": 3},
                "note": {"type": "string", "maxLength": 20},
            },
            "required": ["route", "passengers", "meals"],
        },
    },
    "clock": {"description": "The time now"},  # no parameters at all
}  # fmt: skip
QUESTION = [{"role": "user", "content": "What is the weather in Paris? Then book me a flight to Rome."}]


def tools(*names: str) -> list[dict]:
    return [{"type": "function", "function": {"name": n, **TOOLS[n]}} for n in names]


def validate(call) -> None:
    schema = TOOLS[call.function.name].get("parameters") or {"type": "object", "properties": {}}
    jsonschema.validate(json.loads(call.function.arguments), schema)


@pytest.fixture(scope="module")
def server(smollm2):
    """Its own server: three tools described in the system message need more than 512 tokens of context."""
    with running_server(smollm2, "--max-model-len", "1024") as (url, _):
        yield url


@pytest.fixture(scope="module")
def client(server):
    return OpenAI(base_url=f"{server}/v1", api_key="sk-test", max_retries=0)


def ask(client, tool_choice, temperature=0.0, **kw):
    return client.chat.completions.create(
        model="smollm2", messages=QUESTION, tools=tools(*TOOLS), tool_choice=tool_choice,
        parallel_tool_calls=kw.pop("parallel_tool_calls", False), max_tokens=120,
        temperature=temperature, **kw,
    )  # fmt: skip


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_required_gives_a_valid_call(client, temperature):
    for seed in range(3 if temperature else 1):
        reply = ask(client, "required", temperature, seed=seed)
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls" and choice.message.content is None
        (call,) = choice.message.tool_calls
        assert call.type == "function" and call.id.startswith("call_")
        validate(call)


@pytest.mark.parametrize("name", list(TOOLS))
def test_a_named_function_is_the_one_called(client, name):
    for temperature in (0.0, 1.0):
        reply = ask(client, {"type": "function", "function": {"name": name}}, temperature, seed=7)
        (call,) = reply.choices[0].message.tool_calls
        assert call.function.name == name and reply.choices[0].finish_reason == "tool_calls"
        validate(call)


def test_parallel_calls_each_validate(client):
    reply = ask(client, "required", parallel_tool_calls=True)
    calls = reply.choices[0].message.tool_calls or []
    assert len(calls) >= 1 and len({c.id for c in calls}) == len(calls)
    for call in calls:
        validate(call)


def test_streamed_calls_equal_the_whole_answer(client):
    whole = ask(client, "required").choices[0].message.tool_calls
    chunks = list(ask(client, "required", stream=True))
    deltas = [c.choices[0].delta.tool_calls for c in chunks if c.choices and c.choices[0].delta.tool_calls]
    assert [d[0].index for d in deltas] == [0] and deltas[0][0].id.startswith("call_")
    (streamed,) = deltas[0]
    assert (streamed.function.name, streamed.function.arguments) == (
        whole[0].function.name,
        whole[0].function.arguments,
    )
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


class BookFlight(BaseModel):
    """Book a flight between two airports"""

    origin: str = Field(max_length=3)
    destination: str = Field(max_length=3)
    passengers: int = Field(ge=1, le=9)


def test_the_clients_parse_and_stream_helpers_get_pydantic_arguments(client):
    tool = openai.pydantic_function_tool(BookFlight)  # strict: the client parses the arguments itself
    named = {"type": "function", "function": {"name": "BookFlight"}}
    messages = [{"role": "user", "content": "Two of us fly from JFK to LAX."}]
    parsed = client.chat.completions.parse(
        model="smollm2", messages=messages, tools=[tool], tool_choice=named, max_tokens=80, temperature=0
    )
    args = parsed.choices[0].message.tool_calls[0].function.parsed_arguments
    assert isinstance(args, BookFlight)
    with client.chat.completions.stream(
        model="smollm2", messages=messages, tools=[tool], tool_choice=named, max_tokens=80, temperature=0
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.parsed_arguments == args


def test_a_conversation_goes_on_with_the_tool_result(client):
    first = ask(client, {"type": "function", "function": {"name": "get_weather"}}).choices[0].message
    result = {
        "role": "tool",
        "tool_call_id": first.tool_calls[0].id,
        "content": '{"celsius": 21, "sky": "clear"}',
    }
    reply = client.chat.completions.create(
        model="smollm2",
        messages=[*QUESTION, first, result],
        tools=tools(*TOOLS),
        max_tokens=30,
        temperature=0,
    )  # the assistant message goes back as the client returned it
    assert reply.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_tool_choice_none_answers_in_text(client):
    reply = ask(client, "none", max_completion_tokens=20)
    assert reply.choices[0].message.tool_calls is None and reply.choices[0].message.content


@pytest.mark.parametrize(
    "change,says",
    [
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "'nope', which is not in tools"),
        ({"tools": None, "tool_choice": "required"}, "tool_choice required needs tools"),
        ({"tools": tools("clock", "clock")}, "two functions have the same name"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools.0.function.name"),
        ({"tool_choice": "required", "response_format": {"type": "json_object"}}, "cannot both constrain"),
        ({"tool_choice": "required", "tools": [{"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"q": {"type": "string", "pattern": "(?=x)"}}}}}]},
         "the parameters of f cannot be enforced"),
    ],
)  # fmt: skip
def test_bad_tool_requests_are_400s_that_say_why(client, change, says):
    body = {"model": "smollm2", "messages": QUESTION, "tools": tools(*TOOLS), **change}
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(**{k: v for k, v in body.items() if v is not None})
    assert says in e.value.message
