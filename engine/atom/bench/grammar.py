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


PROMPT = "Describe a famous scientist as JSON with a name, an age and some tags."


def run_grammar_throughput(model: Path, batches: list[int], **engine_kwargs) -> list[dict]:
    """Output tok/s of B identical greedy requests, constrained to SCHEMA and free, through the whole
    engine (mask, sampler, matchers and all). Each constrained request runs until its grammar is
    complete; the free ones then run exactly as many tokens (end-of-sequence ignored), so both sides
    generate the same tokens at the same batch size and only the constraint differs. Best of 3 runs each
    (prefill included on both sides)."""
    from ..engine.llm_engine import LLM
    from ..sampling_params import SamplingParams

    llm = LLM(str(model), **engine_kwargs)
    llm.warm_up()
    grammar = json_schema_grammar(SCHEMA)
    prompt = llm.tokenizer.encode(PROMPT)
    rows = []

    def best_of(runs: int, params: SamplingParams, batch: int) -> tuple[float, list]:
        times, outs = [], None
        for _ in range(runs):
            start = time.perf_counter()
            outs = llm.generate([prompt] * batch, params)
            times.append(time.perf_counter() - start)
        return min(times), outs

    for batch in batches:
        constrained = SamplingParams(max_tokens=256, temperature=0, grammar=grammar)
        llm.generate([prompt], constrained)  # the matchers' first use, out of the timing
        constrained_s, outs = best_of(3, constrained, batch)
        tokens = len(outs[0].output_token_ids)
        free = SamplingParams(max_tokens=tokens, temperature=0, ignore_eos=True)
        free_s, _ = best_of(3, free, batch)
        rows.append(
            {
                "batch": batch,
                "tokens_per_request": tokens,
                "free_tok_s": round(batch * tokens / free_s, 1),
                "constrained_tok_s": round(batch * tokens / constrained_s, 1),
                "constrained_cost_pct": round(100 * (constrained_s / free_s - 1), 1),
            }
        )
    llm.close()
    return rows
