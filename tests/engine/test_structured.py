"""Grammars in the engine core (offline LLM, SmolLM2): constrained rows follow their schema, the rows
of the same batch without one are untouched, and the mask is built from the real tokenizer."""

from __future__ import annotations

import json

import jsonschema
import pytest

from atom import LLM, SamplingParams
from atom.engine.structured import json_schema_grammar
from atom.errors import InvalidRequestError

SCHEMA = {
    "type": "object",
    "properties": {"word": {"type": "string", "maxLength": 10}, "n": {"enum": [1, 2, 3]}},
    "required": ["word", "n"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def llm(smollm2):
    with LLM(str(smollm2), max_model_len=256) as engine:
        yield engine


def test_constrained_and_free_rows_share_a_batch(llm):
    prompt = llm.tokenizer.apply_chat_template([{"role": "user", "content": "Say something."}])
    free = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
    alone = llm.generate([prompt], free)[0].output_token_ids
    grammar = json_schema_grammar(SCHEMA)
    constrained = SamplingParams(max_tokens=60, temperature=0, grammar=grammar)
    outs = llm.generate([prompt, prompt, prompt], [constrained, free, constrained])
    assert outs[1].output_token_ids == alone  # the mask touched only the rows with a grammar
    for out in (outs[0], outs[2]):
        assert out.finish_reason == "stop"
        jsonschema.validate(json.loads(out.text), SCHEMA)


def test_a_grammar_is_dropped_with_its_request(llm):
    grammar = json_schema_grammar(SCHEMA)
    llm.generate([[1, 2, 3]], SamplingParams(max_tokens=60, temperature=0, grammar=grammar))
    assert llm.core.grammars.matchers == {}


def test_unsupported_constructs_are_named():
    with pytest.raises(InvalidRequestError, match=r'Unimplemented keys: \["not"\]'):
        json_schema_grammar({"not": {"type": "string"}})
