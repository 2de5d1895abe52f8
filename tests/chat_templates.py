"""Real chat templates, from PyPI (no model hub here): llama.cpp keeps the templates of the models it
serves in models/templates, and the llama-cpp-python sdist (pinned by version and hash) carries that
folder. Only the templates are extracted and cached; nothing of them is committed."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST = "llama-cpp-python==0.3.36"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
TEMPLATES = {  # ours -> the file in vendor/llama.cpp/models/templates
    "gpt-oss": "openai-gpt-oss-120b.jinja",
    "qwen3": "Qwen-Qwen3-0.6B.jinja",
    "llama3.1": "meta-llama-Llama-3.1-8B-Instruct.jinja",
}
HARMONY_TOKENS = (
    "<|start|>",
    "<|end|>",
    "<|message|>",
    "<|channel|>",
    "<|constrain|>",
    "<|return|>",
    "<|call|>",
)


def real_templates(cache: Path) -> dict[str, str]:
    out = cache / "chat-templates"
    if not all((out / f"{name}.jinja").exists() for name in TEMPLATES):
        _extract(out)
    return {name: (out / f"{name}.jinja").read_text() for name in TEMPLATES}


def _extract(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--no-deps",
            "--no-binary",
            ":all:",
            SDIST,
            "-d",
            tmp,
        ]
        subprocess.run(cmd, check=True, timeout=600)
        (sdist,) = Path(tmp).glob("*.tar.gz")
        digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
        assert digest == SDIST_SHA256, f"{sdist.name}: sha256 {digest}, pinned {SDIST_SHA256}"
        out.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                for name, file in TEMPLATES.items():
                    if member.name.endswith(f"vendor/llama.cpp/models/templates/{file}"):
                        (out / f"{name}.jinja").write_bytes(tar.extractfile(member).read())


def write_harmony_tokenizer(src: Path, out: Path, template: str) -> dict[str, int]:
    """SmolLM2's BPE plus Harmony's special tokens (ids past SmolLM2's 49,152), gpt-oss's real chat
    template, and <|return|> and <|call|> as the ends of a turn, as gpt-oss's generation config has them."""
    import json

    from tokenizers import AddedToken, Tokenizer

    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in HARMONY_TOKENS])
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    ids = {t: tok.token_to_id(t) for t in HARMONY_TOKENS}
    config = {"eos_token": "<|return|>", "bos_token": "<|startoftext|>", "pad_token": "<|endoftext|>"}
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    (out / "chat_template.jinja").write_text(template)
    ends = [ids["<|return|>"], ids["<|call|>"]]
    (out / "generation_config.json").write_text(json.dumps({"eos_token_id": ends}))
    return ids
