"""docs/server.md keeps up with the server: every request field and every metric is documented."""

from __future__ import annotations

import re
from pathlib import Path

from atom.server.metrics import Metrics
from atom.server.protocol import ChatCompletionRequest, ChatMessage, CompletionRequest

DOC = (Path(__file__).parents[2] / "docs" / "server.md").read_text()


def test_every_request_field_is_documented():
    fields = set(CompletionRequest.model_fields) | set(ChatCompletionRequest.model_fields)
    fields |= set(ChatMessage.model_fields)
    missing = sorted(f for f in fields if f"`{f}`" not in DOC)
    assert not missing, f"docs/server.md does not mention {missing}"


def test_every_metric_is_documented():
    names = {m.name for m in Metrics().registry.collect()}
    missing = sorted(n for n in names if not re.search(rf"`{n}(_total)?[`{{]", DOC))
    assert not missing, f"docs/server.md does not mention {missing}"
