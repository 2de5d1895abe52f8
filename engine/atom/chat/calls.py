"""Plain data a chat output parser produces."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field


def new_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass
class ToolCall:
    name: str
    arguments: str  # a JSON object as text, as OpenAI sends it
    id: str = field(default_factory=new_call_id)

    def openai(self, index: int | None = None) -> dict:
        """The `tool_calls` entry of a message, or of a stream delta (index given: a delta carries the
        whole call at once)."""
        call = {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }
        return call if index is None else {"index": index, **call}


@dataclass
class ChatDelta:
    """What some new tokens add to one answer."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)

    def __iadd__(self, other: ChatDelta) -> ChatDelta:
        self.content += other.content
        self.reasoning += other.reasoning
        self.tool_calls += other.tool_calls
        return self


def parse_json_call(text: str, arguments_keys: tuple[str, str], tool_names: set[str]) -> ToolCall | None:
    """`{"name": ..., <arguments>: {...}}` as text (the arguments under the first key present, in the
    family's order of preference), else None."""
    try:
        call = json.loads(text)
    except ValueError:
        return None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return None
    first, second = arguments_keys
    return parse_call(call["name"], call.get(first, call.get(second)), tool_names)


def parse_call(name: str, arguments: object, tool_names: set[str]) -> ToolCall | None:
    """A call to a declared tool whose arguments are a JSON object (text or already parsed), else None."""
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if name not in tool_names or not isinstance(arguments, dict):
        return None
    return ToolCall(name, json.dumps(arguments, ensure_ascii=False))
