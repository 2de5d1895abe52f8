"""Chat-level output: what a model's chat format says beyond plain text (reasoning, tool calls), how a
template that knows no tools is told about them, and the grammars that make a required tool call
well-formed. The server's chat endpoint uses it; the engine core never sees any of it."""

from .calls import ChatDelta, ToolCall
from .formats import ChatFormat

__all__ = ["ChatDelta", "ChatFormat", "ToolCall"]
