"""Tool calls through the templates that render tools themselves: Qwen3's (Hermes `<tool_call>` blocks,
`<think>` reasoning) and Llama 3.1's (`{"name", "parameters"}` JSON), each on a small random checkpoint of
its family served by `atom serve`, asked through the official openai client. Random weights say
nothing sensible; a required or named call must still come back as a valid call of the named
function, because decoding follows the family's own call syntax around the schema."""

from __future__ import annotations

import json
import shutil

import jsonschema
import pytest
from openai import OpenAI

from .conftest import running_server

ADD = {
    "type": "function",
    "function": {
        "name": "add",
        "description": "Adds two integers",
        "parameters": {
            "type": "object",
            "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}},
            "required": ["a", "b"],
        },
    },
}
CLOCK = {"type": "function", "function": {"name": "clock", "description": "The time now"}}


@pytest.fixture(scope="module", params=["qwen3", "llama3.1"])
def client(request, tiny_qwen3, tiny_llama, real_chat_templates, tmp_path_factory):
    model = tmp_path_factory.mktemp(request.param)
    shutil.copytree(tiny_qwen3 if request.param == "qwen3" else tiny_llama, model, dirs_exist_ok=True)
    (model / "chat_template.jinja").write_text(real_chat_templates[request.param])
    with running_server(model, "--max-model-len", "1024") as (url, _):
        yield OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "add"}}])
def test_forced_calls_are_valid(client, tool_choice):
    for temperature in (0.0, 1.0):
        reply = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "1 + 2?"}], tools=[ADD, CLOCK],
            tool_choice=tool_choice, parallel_tool_calls=False, temperature=temperature, seed=5, max_tokens=60,
        )  # fmt: skip
        choice = reply.choices[0]
        assert choice.finish_reason == "tool_calls", choice
        (call,) = choice.message.tool_calls
        schema = {"add": ADD, "clock": CLOCK}[call.function.name]["function"].get("parameters", {})
        jsonschema.validate(json.loads(call.function.arguments), schema)
        if isinstance(tool_choice, dict):
            assert call.function.name == "add"


def test_the_tool_result_turn_renders_and_answers(client):
    messages = [
        {"role": "user", "content": "1 + 2?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "add", "arguments": '{"a": 1, "b": 2}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "3"},
    ]  # fmt: skip
    reply = client.chat.completions.create(model="m", messages=messages, tools=[ADD], max_tokens=10)
    assert reply.choices[0].finish_reason in ("stop", "length", "tool_calls")
