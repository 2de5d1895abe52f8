"""gpt-oss's Harmony output, parsed by token. After the prompt's `<|start|>assistant` the model writes
messages: a header (`<|channel|>analysis`, or ` to=functions.get_weather<|channel|>commentary json`,
the recipient before or after the channel), `<|message|>`, the body, then `<|end|>` (another message
follows after `<|start|>assistant`), `<|call|>` (a tool call: the turn ends) or `<|return|>` (done).

`analysis` is reasoning, `final` is content, `commentary` to `functions.NAME` is a tool call (its
body JSON arguments), commentary to no one is a preamble the user sees (content). The markers are
special tokens, which detokenization drops, so this reads token ids; message bodies are detokenized
incrementally, one Detokenizer per message. Malformed output never raises: a message never closed
ends with the answer; a call whose arguments are not a JSON object, or to an undeclared function,
is handed out as content."""

from __future__ import annotations

import re

from ..tokenizer import Detokenizer
from .calls import ChatDelta, parse_call

SPECIAL = ("<|start|>", "<|end|>", "<|message|>", "<|channel|>", "<|constrain|>", "<|return|>", "<|call|>")
CLOSERS = ("<|end|>", "<|return|>", "<|call|>")


def harmony_ids(tokenizer) -> dict[str, int] | None:
    """The Harmony special tokens' ids, or None when the tokenizer does not have them all."""
    ids = {name: tokenizer.tok.token_to_id(name) for name in SPECIAL}
    return None if None in ids.values() else ids


class HarmonyParser:
    def __init__(self, tokenizer, tool_names: set[str] | None) -> None:
        self.tokenizer = tokenizer
        ids = harmony_ids(tokenizer)
        self.start, self.message = ids["<|start|>"], ids["<|message|>"]
        self.closers = {ids[name] for name in CLOSERS}
        self.tool_names = tool_names or set()
        self.header: list[int] = []
        self.body: list[int] | None = None  # None: reading a header
        self.channel = self.recipient = ""
        self.detokenizer: Detokenizer | None = None
        self.messages = 0

    def feed(self, token_ids: list[int], text: str) -> ChatDelta:
        delta = ChatDelta()
        for token in token_ids:
            self._token(token, delta)
        self._stream(delta)
        return delta

    def finish(self) -> ChatDelta:
        delta = ChatDelta()
        if self.body is not None:  # a message never closed ends with the answer
            self._close(delta)
        elif not self.messages and self.header:  # no Harmony at all: say what was written
            delta.content = self.tokenizer.decode(self.header)
        return delta

    def _token(self, token: int, delta: ChatDelta) -> None:
        if self.body is None:
            if token == self.message:
                self._open()
            elif token == self.start:
                self.header = []
            else:
                self.header.append(token)
        elif token in self.closers or token == self.start:  # <|start|> here: the message was never closed
            self._stream(delta)
            self._close(delta)
        else:
            self.body.append(token)

    def _open(self) -> None:
        header = self.tokenizer.tok.decode(self.header, skip_special_tokens=False)
        channel = re.search(r"<\|channel\|>\s*(\w+)", header)
        recipient = re.search(r"to=([\w.\-]+)", header)
        self.channel = channel.group(1) if channel else "final"
        self.recipient = recipient.group(1) if recipient else ""
        self.body, self.header = [], []
        self.detokenizer = Detokenizer(self.tokenizer)
        self.messages += 1

    def _is_call(self) -> bool:
        return self.recipient.startswith("functions.")

    def _stream(self, delta: ChatDelta) -> None:
        """Bodies of reasoning and content are handed out as they come; a call's, once it is closed."""
        if self.body is None or self._is_call():
            return
        text = self.detokenizer.update(self.body)
        if self.channel == "analysis":
            delta.reasoning += text
        else:
            delta.content += text

    def _close(self, delta: ChatDelta) -> None:
        if self._is_call():
            text = self.tokenizer.decode(self.body)
            call = parse_call(self.recipient.removeprefix("functions."), text.strip(), self.tool_names)
            if call is not None:
                delta.tool_calls.append(call)
            else:
                delta.content += text
        self.body, self.detokenizer = None, None
