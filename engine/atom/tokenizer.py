"""Tokenizer (HF tokenizers) + chat template (jinja2, from the model folder) + incremental detokenizing."""

from __future__ import annotations

import datetime
import functools
import json
from pathlib import Path

import jinja2
import jinja2.sandbox
from tokenizers import Tokenizer as HFTokenizer

from .errors import InvalidRequestError, ModelLoadError


def _raise(message: str) -> None:
    raise InvalidRequestError(f"chat template: {message}")


def _tojson(value, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
    """HF transformers' `tojson` (templates are written against it): plain json.dumps, no HTML escaping."""
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(fmt: str) -> str:
    return datetime.datetime.now().strftime(fmt)


@functools.lru_cache(maxsize=8)
def _compile_template(source: str) -> jinja2.Template:
    """The environment HF transformers renders chat templates in (same filters, globals, loop controls)."""
    env = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(source)


def config_eos_ids(folder: Path, names: tuple[str, ...]) -> set[int]:
    """`eos_token_id` (an int or a list) from whichever of these JSON files exist."""
    ids: set[int] = set()
    for name in names:
        path = folder / name
        if path.exists():
            eos = json.loads(path.read_text()).get("eos_token_id")
            ids.update(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return ids


class Tokenizer:
    def __init__(self, folder: Path) -> None:
        path = folder / "tokenizer.json"
        if not path.exists():
            raise ModelLoadError(f"{folder} has no tokenizer.json")
        self.tok = HFTokenizer.from_file(str(path))
        cfg_path = folder / "tokenizer_config.json"
        self.config = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
        template = self.config.get("chat_template")
        if (folder / "chat_template.jinja").exists():
            template = (folder / "chat_template.jinja").read_text()
        self.chat_template = template
        self.eos_token_ids = self._eos_ids(folder)

    def _token(self, key: str) -> str | None:
        value = self.config.get(key)
        return value.get("content") if isinstance(value, dict) else value

    def _eos_ids(self, folder: Path) -> set[int]:
        ids = config_eos_ids(folder, ("generation_config.json", "config.json"))
        eos_token = self._token("eos_token")
        if eos_token and self.tok.token_to_id(eos_token) is not None:
            ids.add(self.tok.token_to_id(eos_token))
        return ids

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        # encode_batch releases the GIL while it works (encode holds it: a 7 MB prompt froze every
        # other thread, the server's event loop included, for 4 s)
        return self.tok.encode_batch([text], add_special_tokens=add_special_tokens)[0].ids

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def apply_chat_template(
        self,
        messages: list[dict],
        add_generation_prompt: bool = True,
        tools: list[dict] | None = None,
        **variables,
    ) -> str:
        """variables: what a template may read besides messages and tools (reasoning_effort, ...);
        None values are left undefined, so the template's own defaults apply."""
        if not self.chat_template:
            raise InvalidRequestError("this model has no chat template; use /v1/completions")
        try:
            template = _compile_template(self.chat_template)
        except jinja2.TemplateSyntaxError as e:
            raise InvalidRequestError(f"chat template: it does not parse: {e}") from e
        defined = {k: v for k, v in variables.items() if v is not None}
        try:
            return template.render(
                messages=messages,
                tools=tools,
                add_generation_prompt=add_generation_prompt,
                bos_token=self._token("bos_token") or "",
                eos_token=self._token("eos_token") or "",
                **defined,
            )
        except (jinja2.TemplateError, TypeError, ValueError) as e:  # the template choked on these messages
            raise InvalidRequestError(f"chat template: cannot render these messages: {e}") from e


class IdsOnlyTokenizer:
    """For a model folder without tokenizer files (random-weight benchmarks): token ids in, no text out."""

    chat_template = None

    def __init__(self, folder: Path) -> None:
        self.eos_token_ids = config_eos_ids(folder, ("config.json",))

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        raise InvalidRequestError("this model folder has no tokenizer.json: send token ids, not text")

    def decode(self, ids: list[int]) -> str:
        return ""

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True, **_) -> str:
        raise InvalidRequestError("this model folder has no tokenizer or chat template")


def load_tokenizer(folder: Path, load_format: str) -> Tokenizer | IdsOnlyTokenizer:
    """Random weights (`dummy`) may come with a config alone; real checkpoints must bring a tokenizer."""
    if load_format == "dummy" and not (folder / "tokenizer.json").exists():
        return IdsOnlyTokenizer(folder)
    return Tokenizer(folder)


class Detokenizer:
    """Incremental text for one sequence; holds back an incomplete UTF-8 character.

    Each update decodes a short window, not the whole output (that was quadratic in the output length):
    the tokens since the last emitted text plus the ones before them, whose decoded text is subtracted,
    so a leading space or a multi-token character comes out right."""

    def __init__(self, tokenizer: Tokenizer | IdsOnlyTokenizer) -> None:
        self.tokenizer = tokenizer
        self.text = ""
        self.prefix_offset = 0  # window start: context for the tokens being read
        self.read_offset = 0  # tokens before this have produced their text

    def update(self, output_ids: list[int]) -> str:
        decode = self.tokenizer.decode
        prefix_text = decode(output_ids[self.prefix_offset : self.read_offset])
        new_text = decode(output_ids[self.prefix_offset :])
        if len(new_text) <= len(prefix_text) or new_text.endswith("\ufffd"):
            return ""  # nothing printable yet (an incomplete character, or a special token)
        delta = new_text[len(prefix_text) :]
        self.prefix_offset, self.read_offset = self.read_offset, len(output_ids)
        self.text += delta
        return delta
