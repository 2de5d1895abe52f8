"""Which chat format a model speaks, read from its chat template and tokenizer, and what follows from
it: how messages with tool calls and tool results are shown to the template, which parser reads the
answer, which grammar makes a required call well-formed.

Known formats whose templates render `tools` themselves: Harmony (gpt-oss), Hermes `<tool_call>`
(Qwen2.5, Qwen3), Llama 3.1+ JSON. Any other template is not trusted with tools: we describe them in
the system message in the Hermes style ourselves and render calls and results as text in it."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

from ..errors import InvalidRequestError
from . import grammars
from .harmony import HarmonyParser, harmony_ids
from .hermes import CALL_CLOSE, CALL_OPEN, HermesParser
from .llama3_json import Llama3JsonParser

TOOLS_PROMPT = (
    "# Tools\n\nYou may call one or more functions to help with the user's request. The functions are "
    "described by these JSON schemas:\n<tools>\n{tools}\n</tools>\n\nTo call a function, answer with "
    "one JSON object per call inside tags, like this:\n"
    '<tool_call>\n{{"name": <function name>, "arguments": <arguments as a JSON object>}}\n</tool_call>'
)


@dataclass(frozen=True)
class ChatFormat:
    kind: str  # harmony | hermes | llama3_json
    native_tools: bool  # the template renders tools, calls and results itself
    think: bool  # <think> reasoning (Qwen3)

    @classmethod
    def of(cls, tokenizer) -> ChatFormat:
        template = getattr(tokenizer, "chat_template", None) or ""
        if "<|channel|>" in template and harmony_ids(tokenizer):
            return cls("harmony", True, False)
        if CALL_OPEN in template:
            return cls("hermes", True, "<think>" in template)
        if "ipython" in template and '"parameters"' in template:
            return cls("llama3_json", True, False)
        return cls("hermes", False, "<think>" in template)

    def parser(self, tokenizer, tools: list[dict] | None):
        """A fresh parser for one answer, or None when the answer is plain text."""
        names = {t["function"]["name"] for t in tools} if tools else None
        if self.kind == "harmony":
            return HarmonyParser(tokenizer, names)
        if self.kind == "llama3_json":
            return Llama3JsonParser(names) if names else None
        return HermesParser(names, self.think) if names or self.think else None

    def grammar(self, tools: list[dict], parallel: bool) -> str:
        """The grammar a required call follows (tools: the ones it may call). Compiled once per distinct
        request; a schema llguidance cannot follow is an InvalidRequestError naming the tools."""
        return _compiled(self.kind, json.dumps(tools, sort_keys=True), parallel)

    def template_messages(self, messages: list[dict], tools: list[dict] | None) -> list[dict]:
        """Messages as the template should see them. A native template gets them as OpenAI sends them
        (arguments parsed into objects, as templates expect to `tojson` them); for any other template
        tools go into the system message and calls and results become text."""
        if self.native_tools:
            return [_native(m) for m in messages]
        out = [_as_text(m) for m in messages]
        if tools:
            described = TOOLS_PROMPT.format(tools="\n".join(json.dumps(t) for t in tools))
            if out and out[0]["role"] == "system":
                out[0] = {**out[0], "content": out[0]["content"] + "\n\n" + described}
            else:
                out.insert(0, {"role": "system", "content": described})
        return out

    def template_tools(self, tools: list[dict] | None) -> list[dict] | None:
        """Tools as a native template gets them: a description always there (OpenAI's is optional, and
        gpt-oss's template concatenates it, so a tool without one would not render)."""
        if not self.native_tools or not tools:
            return None
        return [
            {**t, "function": {**t["function"], "description": t["function"].get("description", "")}}
            for t in tools
        ]


@functools.lru_cache(maxsize=256)
def _compiled(kind: str, tools_json: str, parallel: bool) -> str:
    import llguidance

    tools = json.loads(tools_json)
    names = ", ".join(t["function"]["name"] for t in tools)
    try:
        grammar = llguidance.LLMatcher.grammar_from_lark(grammars.BUILDERS[kind](tools, parallel))
        error = llguidance.LLMatcher.validate_grammar(grammar)
    except BaseException as e:  # a Rust panic arrives as pyo3's PanicException, a BaseException
        if isinstance(e, KeyboardInterrupt | SystemExit):
            raise
        error = str(e)
    if error and not error.startswith("WARNING"):
        reason = error.split("\n   1 |")[0].strip()  # llguidance then prints the whole grammar
        raise InvalidRequestError(f"tools: the parameters of {names} cannot be enforced: {reason}")
    return grammar


def _arguments(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return text  # templates print a string as it is


def _native(message: dict) -> dict:
    if not message.get("tool_calls"):
        return message
    calls = [
        {**c, "function": {**c["function"], "arguments": _arguments(c["function"]["arguments"])}}
        for c in message["tool_calls"]
    ]
    return {**message, "tool_calls": calls}


def _as_text(message: dict) -> dict:
    role, content = message["role"], message.get("content") or ""
    if role != "tool" and not message.get("tool_calls"):
        return message
    if role == "tool":
        return {"role": "user", "content": f"<tool_response>\n{content}\n</tool_response>"}
    calls = [
        f'{CALL_OPEN}\n{{"name": {json.dumps(c["function"]["name"])}, "arguments": '
        f"{c['function']['arguments']}}}\n{CALL_CLOSE}"
        for c in message.get("tool_calls") or ()
    ]
    return {"role": role, "content": "\n".join([content, *calls] if content else calls)}
