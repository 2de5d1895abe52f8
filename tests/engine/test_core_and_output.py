"""The engine core hands out token ids only; the output processor makes the text. Checked on SmolLM2:
the core's ids equal the in-process LLM's, the incremental detokenizer equals a full decode, stop strings
end a request across token boundaries and are reported for the core to abort."""

from __future__ import annotations

import random

import pytest

from atom.config import EngineConfig
from atom.engine.core import EngineCore
from atom.engine.llm_engine import LLM
from atom.engine.outputs import CoreOutput, TokenLogprob
from atom.output import OutputProcessor
from atom.sampling_params import SamplingParams
from atom.tokenizer import Detokenizer, Tokenizer


@pytest.fixture(scope="module")
def tokenizer(smollm2):
    return Tokenizer(smollm2)


def test_incremental_detokenizing_equals_a_full_decode(tokenizer):
    rng = random.Random(0)
    vocab = tokenizer.vocab_size
    text = "Déjà vu: the café's naïve piñata — 東京 🙂 costs $3.50!\n\tNew line, tabs and  double  spaces."
    sequences = [tokenizer.encode(text, add_special_tokens=False)]
    sequences += [[rng.randrange(vocab) for _ in range(120)] for _ in range(30)]
    for ids in sequences:
        detok, streamed = Detokenizer(tokenizer), ""
        for n in range(1, len(ids) + 1):
            streamed += detok.update(ids[:n])
        full = tokenizer.decode(ids)
        assert streamed == detok.text
        assert full.startswith(streamed) and (streamed == full or full.endswith("\ufffd")), (
            ids,
            streamed,
            full,
        )


def test_stop_strings_span_tokens_and_are_reported_for_abort(tokenizer):
    processor = OutputProcessor(tokenizer)
    ids = tokenizer.encode(" The capital of France is Paris. It is big.", add_special_tokens=False)
    processor.add("r", [1, 2], SamplingParams(stop=["Paris."]))
    outputs, stopped, text = [], [], ""
    for token in ids:
        results, ended = processor.process([CoreOutput("r", [token])])
        outputs += results
        stopped += ended
        text += "".join(r.delta_text for r in results)
    final = outputs[-1]
    assert final.finished and final.finish_reason == "stop" and stopped == ["r"]
    assert final.text == " The capital of France is " == text
    assert processor.process([CoreOutput("r", [ids[-1]])]) == ([], [])  # a late step of it is dropped


def test_logprob_text_is_made_once_by_the_processor(tokenizer):
    processor = OutputProcessor(tokenizer)
    processor.add("r", [1], SamplingParams(logprobs=2))
    paris = tokenizer.encode(" Paris", add_special_tokens=False)[0]
    lp = TokenLogprob(paris, -0.25, [(paris, -0.25), (7, -3.0)])
    (result,), _ = processor.process([CoreOutput("r", [paris], [lp], "length")])
    entry = result.logprobs[0]
    assert entry["token"] == " Paris" and entry["logprob"] == -0.25
    assert [t["token"] for t in entry["top"]] == [" Paris", tokenizer.decode([7])]


def test_the_core_hands_out_ids_only_and_agrees_with_the_offline_llm(smollm2):
    config = EngineConfig(model=str(smollm2), max_model_len=256, kv_cache_memory_gb=0.25)
    core = EngineCore(config)
    llm = LLM(str(smollm2), max_model_len=256, kv_cache_memory_gb=0.25)
    prompt = llm.tokenizer.encode("The capital of France is")
    params = SamplingParams(max_tokens=8, temperature=0, logprobs=1)
    core.add("a", prompt, params)
    ids, last = [], None
    while core.has_unfinished():
        for out in core.step():
            assert isinstance(out, CoreOutput) and not hasattr(out, "text")
            ids += out.new_token_ids
            last = out
    assert last.finish_reason == "length" and len(ids) == 8
    assert isinstance(last.logprobs[0], TokenLogprob)
    assert llm.generate([prompt], params)[0].output_token_ids == ids
    stats = core.stats()
    assert stats.running == 0 and stats.waiting == 0 and stats.free_blocks == core.block_manager.num_free
