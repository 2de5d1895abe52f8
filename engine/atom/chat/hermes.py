"""Hermes-style output (Qwen2.5/Qwen3, and any template we tell about tools ourselves):
`<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>` blocks between ordinary text, and
Qwen3's `<think>...</think>` reasoning. Text in, text out: these markers are plain text, not special
tokens, so they survive detokenization. A block that is not a valid call to a declared tool stays in
the content as the model wrote it (the client sees it; nothing is dropped, nothing is a 500)."""

from __future__ import annotations

from .calls import ChatDelta, parse_json_call

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"


def held_tail(text: str, markers: tuple[str, ...]) -> int:
    """How many characters at the end of text could begin one of the markers (held back while streaming)."""
    for n in range(min(len(text), max(map(len, markers), default=0)), 0, -1):
        if any(m.startswith(text[-n:]) for m in markers):
            return n
    return 0


class HermesParser:
    def __init__(self, tool_names: set[str] | None, think: bool) -> None:
        self.tool_names = tool_names  # None: tool calls are not parsed (no tools, or tool_choice none)
        self.think = think
        self.mode = "content"  # content | reasoning | call
        self.buffer = ""  # text not yet handed out

    def feed(self, token_ids: list[int], text: str) -> ChatDelta:
        self.buffer += text
        return self._drain(final=False)

    def finish(self) -> ChatDelta:
        return self._drain(final=True)

    def _openers(self) -> tuple[str, ...]:
        return (CALL_OPEN,) * (self.tool_names is not None) + (THINK_OPEN,) * self.think

    def _drain(self, final: bool) -> ChatDelta:
        delta = ChatDelta()
        while self.buffer:
            if self.mode == "content":
                done = self._until(self._openers(), delta, "content", final)
            elif self.mode == "reasoning":
                done = self._until((THINK_CLOSE,), delta, "reasoning", final)
            else:
                done = self._call(delta, final)
            if done:
                break
        return delta

    def _until(self, markers: tuple[str, ...], delta: ChatDelta, field: str, final: bool) -> bool:
        """Hand out text up to the first marker and switch mode there; True when nothing more can go."""
        found = [(self.buffer.find(m), m) for m in markers if m in self.buffer]
        if found:
            at, marker = min(found)
            setattr(delta, field, getattr(delta, field) + self.buffer[:at])
            self.buffer = self.buffer[at + len(marker) :]
            self.mode = {CALL_OPEN: "call", THINK_OPEN: "reasoning", THINK_CLOSE: "content"}[marker]
            return False
        keep = 0 if final else held_tail(self.buffer, markers)
        setattr(delta, field, getattr(delta, field) + self.buffer[: len(self.buffer) - keep])
        self.buffer = self.buffer[len(self.buffer) - keep :]
        return True

    def _call(self, delta: ChatDelta, final: bool) -> bool:
        at = self.buffer.find(CALL_CLOSE)
        if at < 0 and not final:
            return True  # a call is handed out whole, once it is closed
        body = self.buffer if at < 0 else self.buffer[:at]
        self.buffer = "" if at < 0 else self.buffer[at + len(CALL_CLOSE) :]
        self.mode = "content"
        call = parse_json_call(body, ("arguments", "parameters"), self.tool_names or set())
        if call is not None:
            delta.tool_calls.append(call)
        else:
            delta.content += CALL_OPEN + body + (CALL_CLOSE if at >= 0 else "")
        return at < 0
