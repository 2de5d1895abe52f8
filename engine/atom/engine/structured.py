"""Structured outputs: a request's grammar constrains which tokens it may sample, step by step.

llguidance (Microsoft's, the engine behind OpenAI-style structured outputs in several servers) over
xgrammar: it has no Python dependencies at all (xgrammar pulls transformers and a second Triton into a
runtime image), builds its token trie from our tokenizer.json directly, and computes a token mask in
tens of microseconds with no per-request compilation step to wait for. A grammar is checked in the API
process before anything is queued (LLMatcher.validate_grammar); the core holds one matcher per request,
fills one bitmask row per constrained sequence each step (no Python loop over the vocabulary), and
advances the matcher with the sampled token.
"""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor

import torch

from ..errors import InvalidRequestError
from .sampler import on_device

# compact JSON: no free whitespace, so a model cannot pad its answer until max_tokens runs out
JSON_OPTIONS = {"whitespace_flexible": False}


def json_schema_grammar(schema: dict | bool) -> str:
    """The llguidance grammar for a JSON schema (True / {} : any JSON value). Raises InvalidRequestError
    naming what cannot be compiled."""
    import llguidance

    try:
        grammar = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema), overrides=JSON_OPTIONS)
        error = llguidance.LLMatcher.validate_grammar(grammar)
    except BaseException as e:  # a Rust panic arrives as pyo3's PanicException, a BaseException
        if isinstance(e, KeyboardInterrupt | SystemExit):
            raise
        raise InvalidRequestError(f"response_format: this JSON schema cannot be compiled: {e}") from e
    if error and not error.startswith("WARNING"):
        raise InvalidRequestError(f"response_format: this JSON schema is not supported: {error}")
    return grammar


class Grammars:
    """The core's matchers, one per constrained request."""

    def __init__(self, tokenizer_json: str | None, vocab_size: int, eos_token_ids: set[int]) -> None:
        """tokenizer_json None: a model folder without a tokenizer, which cannot take grammars."""
        self._source = (tokenizer_json, vocab_size, sorted(eos_token_ids))
        # llguidance's token trie takes about a second for a 200k vocabulary: built in the background
        # from the start (while the model loads and warms up), so no request's step waits for it
        self._tokenizer: Future | None = None
        if tokenizer_json is not None:
            self._tokenizer = ThreadPoolExecutor(1, "atom-grammar-trie").submit(self._build_tokenizer)
        self._executor = None  # llguidance's thread pool: the batch's masks in parallel, GIL released
        self.vocab_size = vocab_size
        self.matchers: dict[str, object] = {}

    def _build_tokenizer(self):
        import llguidance

        text, vocab, eos = self._source
        try:
            return llguidance.LLTokenizer(text, n_vocab=vocab, eos_token=eos)
        except TypeError:  # llguidance before 1.7 takes one end-of-sequence id (the others stay sampleable)
            return llguidance.LLTokenizer(text, n_vocab=vocab, eos_token=eos[0] if eos else None)

    def _llg_tokenizer(self):
        return self._tokenizer.result()  # raises what building it raised (llguidance missing, say)

    def add(self, request_id: str, grammar: str) -> None:
        import llguidance

        if self._tokenizer is None:
            raise InvalidRequestError("structured outputs need the model's tokenizer.json")
        matcher = llguidance.LLMatcher(self._llg_tokenizer(), grammar, log_level=0)
        if matcher.is_error():
            raise InvalidRequestError(f"response_format: {matcher.get_error()}")
        self.matchers[request_id] = matcher

    def drop(self, request_id: str) -> None:
        self.matchers.pop(request_id, None)

    def allowed(self, seqs: list, device: torch.device) -> torch.Tensor | None:
        """[len(seqs), vocab] bool: the tokens each sequence may sample now (all, for unconstrained
        ones); None when none of them is constrained (the common case costs one dict check)."""
        if not self.matchers:
            return None
        request_ids = [s.request_id for s in seqs]
        rows = [i for i, r in enumerate(request_ids) if r in self.matchers]
        if not rows:
            return None
        import llguidance

        if self._executor is None:
            self._executor = llguidance.LLExecutor()
        words = -(-self.vocab_size // 32)
        bits = torch.full((len(request_ids), words), -1, dtype=torch.int32)
        matchers = [(self.matchers[request_ids[i]], i) for i in rows]
        self._executor.unsafe_compute_mask_ptr(matchers, bits.data_ptr(), words * 4, len(request_ids))
        # unpacked where the logits are: the packed mask is 32x smaller to copy, and unpacking a
        # 200k vocabulary for 16 rows on the host cost more than the GPU's whole decode step
        bits = on_device(bits, device)
        shifts = torch.arange(32, dtype=torch.int32, device=device)
        return ((bits.unsqueeze(-1) >> shifts) & 1).bool().flatten(1)[:, : self.vocab_size]

    def advance(self, request_id: str, token: int) -> bool:
        """Feed the sampled token; True when the grammar is complete (nothing but EOS may follow)."""
        matcher = self.matchers.get(request_id)
        if matcher is None:
            return False
        matcher.consume_token(token)
        return matcher.is_stopped()
