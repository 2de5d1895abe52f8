"""What structured outputs cost per step: llguidance's token mask for B constrained sequences (filled row
by row on the host, unpacked to a [B, vocab] boolean mask), measured on a real tokenizer while the
matchers walk through a schema's answer."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import torch

from ..engine.structured import Grammars, json_schema_grammar
from ..tokenizer import Tokenizer

SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 24},
        "age": {"type": "integer", "minimum": 0, "maximum": 150},
        "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 4},
    },
    "required": ["name", "age", "tags"],
    "additionalProperties": False,
}
ANSWER = '{"name":"Ada Lovelace","age":36,"tags":["a","b"]}'


def run_grammar_bench(model: Path, batches: list[int]) -> list[dict]:
    tokenizer = Tokenizer(model)
    start = time.perf_counter()
    grammar = json_schema_grammar(SCHEMA)
    compile_ms = (time.perf_counter() - start) * 1000
    tokens = tokenizer.encode(ANSWER, add_special_tokens=False)
    rows = []
    for batch in batches:
        grammars = Grammars(tokenizer.tok.to_str(), tokenizer.vocab_size, tokenizer.eos_token_ids)
        ids = [f"r{i}" for i in range(batch)]
        start = time.perf_counter()
        for request_id in ids:
            grammars.add(request_id, grammar)
        setup_ms = (time.perf_counter() - start) * 1000
        step_ms = []
        for token in tokens:
            start = time.perf_counter()
            allowed = grammars.allowed(ids, torch.device("cpu"))
            step_ms.append((time.perf_counter() - start) * 1000)
            assert bool(allowed[:, token].all()), "the answer left the grammar"
            for request_id in ids:
                grammars.advance(request_id, token)
        rows.append(
            {
                "batch": batch,
                "vocab": tokenizer.vocab_size,
                "schema_to_grammar_ms": round(compile_ms, 2),
                "matchers_setup_ms (incl. tokenizer trie once)": round(setup_ms, 1),
                "mask_ms_per_step_median": round(statistics.median(step_ms), 3),
                "mask_ms_per_step_max": round(max(step_ms), 3),
                "steps": len(tokens),
            }
        )
    return rows
