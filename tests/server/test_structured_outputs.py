"""Structured outputs through the official openai client against `atom serve` (SmolLM2, CPU): every
answer parses and validates against its schema, because decoding is constrained to it (llguidance),
whatever the small model would have said; sampled as well as greedy, streamed as well as whole."""

from __future__ import annotations

import json
from typing import Literal

import jsonschema
import openai
import pytest
from openai import OpenAI
from pydantic import BaseModel, Field

SCHEMAS = {
    "flat with enum and integer": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 24},
            "population": {"type": "integer", "minimum": 0},
            "size": {"enum": ["small", "medium", "large"]},
        },
        "required": ["city", "population", "size"],
        "additionalProperties": False,
    },
    "nested object and array": {
        "type": "object",
        "properties": {
            "person": {
                "type": "object",
                "properties": {"name": {"type": "string", "maxLength": 16}, "age": {"type": "integer"}},
                "required": ["name", "age"],
                "additionalProperties": False,
            },
            "hobbies": {"type": "array", "items": {"type": "string", "maxLength": 12}, "maxItems": 3},
            "active": {"type": "boolean"},
        },
        "required": ["person", "hobbies", "active"],
        "additionalProperties": False,
    },
    "array of objects": {
        "type": "array",
        "items": {
            "type": "object",
            "properties": {
                "x": {"type": "integer", "minimum": 0, "maximum": 99},
                "label": {"enum": ["a", "b"]},
            },
            "required": ["x", "label"],
            "additionalProperties": False,
        },
        "minItems": 1,
        "maxItems": 3,
    },
}


@pytest.fixture(scope="module")
def client(server):
    return OpenAI(base_url=f"{server}/v1", api_key="sk-test", max_retries=0)


def ask(client, schema, temperature=0.0, stream=False, **kw):
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}
    messages = [{"role": "user", "content": "Answer in JSON: tell me about a city."}]
    reply = client.chat.completions.create(
        model="smollm2", messages=messages, response_format=fmt, max_tokens=160,
        temperature=temperature, stream=stream, **kw,
    )  # fmt: skip
    if stream:
        return "".join(c.choices[0].delta.content or "" for c in reply if c.choices)
    assert reply.choices[0].finish_reason == "stop"  # the grammar ended it, not max_tokens
    return reply.choices[0].message.content


@pytest.mark.parametrize("name", SCHEMAS)
def test_json_schema_answers_validate(client, name):
    schema = SCHEMAS[name]
    for temperature in (0.0, 1.0):
        jsonschema.validate(json.loads(ask(client, schema, temperature, seed=3)), schema)


def test_streamed_answer_validates_and_equals_the_whole_one(client):
    schema = SCHEMAS["nested object and array"]
    whole = ask(client, schema)
    streamed = ask(client, schema, stream=True)
    assert streamed == whole
    jsonschema.validate(json.loads(streamed), schema)


def test_json_object_gives_an_object(client):
    """Any object: nothing bounds its length (a 135M model asked to describe a dog counts to 95 in an
    array until max_tokens), so the prompt asks for one key."""
    question = 'Reply with a JSON object with a single key "answer": what is 2+2?'
    reply = client.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": question}],
        response_format={"type": "json_object"},
        max_tokens=100,
        temperature=0,
    )
    assert reply.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(reply.choices[0].message.content), dict)


class Weather(BaseModel):
    city: str = Field(max_length=20)
    degrees_celsius: int
    sky: Literal["sunny", "cloudy", "rainy"]


def test_the_clients_parse_helper_gets_its_pydantic_model(client):
    completion = client.chat.completions.parse(
        model="smollm2",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        response_format=Weather,
        max_tokens=120,
        temperature=0,
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Weather) and parsed.sky in ("sunny", "cloudy", "rainy")


@pytest.mark.parametrize(
    ("schema", "named"),
    [
        ({"not": {"type": "string"}}, 'Unimplemented keys: ["not"]'),
        ({"type": "string", "format": "bogus"}, "Unknown format: bogus"),
        ({"if": {"type": "string"}, "then": {}}, "Unimplemented keys"),
    ],
)
def test_an_unsupported_schema_is_a_400_naming_the_construct(client, schema, named):
    with pytest.raises(openai.BadRequestError) as e:
        ask(client, schema)
    assert named in e.value.message


def test_json_schema_without_its_schema_object_is_a_400(client):
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "hi"}],
            response_format={"type": "json_schema"},
        )
    assert "json_schema" in e.value.message
