"""Llama 3.x JSON tool calls: the whole answer is `{"name": ..., "parameters": {...}}` (several joined
by `;`), after an optional `<|python_tag|>` (a special token, gone from the text). An answer that
starts with `{` is held until it ends and becomes calls if it parses as such; anything else is
content, streamed as it comes."""

from __future__ import annotations

from .calls import ChatDelta, ToolCall, parse_json_call


def llama3_calls(text: str, tool_names: set[str]) -> list[ToolCall] | None:
    calls = [parse_json_call(part, ("parameters", "arguments"), tool_names) for part in text.split(";")]
    return None if None in calls else calls


class Llama3JsonParser:
    def __init__(self, tool_names: set[str]) -> None:
        self.tool_names = tool_names
        self.text = ""
        self.holding: bool | None = None  # decided by the first non-blank character

    def feed(self, token_ids: list[int], text: str) -> ChatDelta:
        self.text += text
        if self.holding is None and self.text.strip():
            self.holding = self.text.lstrip().startswith("{")
        if self.holding is False:
            out, self.text = self.text, ""
            return ChatDelta(content=out)
        return ChatDelta()

    def finish(self) -> ChatDelta:
        text, self.text = self.text, ""
        calls = llama3_calls(text.strip(), self.tool_names) if self.holding else None
        return ChatDelta(tool_calls=calls) if calls else ChatDelta(content=text)
