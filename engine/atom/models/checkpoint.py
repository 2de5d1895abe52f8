"""The tensors of an HF checkpoint folder (one or several safetensors files), in file order, with FP8
block-quantized weights dequantized on the way (their scales are consumed, never yielded)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import torch
from safetensors import safe_open

from ..errors import ModelLoadError
from . import fp8

IGNORED = ("rotary_emb.inv_freq",)
SCALE = "_scale_inv"


def safetensors_files(folder: Path) -> list[Path]:
    index = folder / "model.safetensors.index.json"
    if index.exists():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [folder / n for n in names]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelLoadError(
            f"{folder} has no *.safetensors files (use --load-format dummy for random weights)"
        )
    return files


def fp8_block(config: dict) -> tuple[int, int]:
    quant = config.get("quantization_config") or {}
    return tuple(quant.get("weight_block_size") or (128, 128))  # type: ignore[return-value]


def tensors(folder: Path, block: tuple[int, int]) -> Iterator[tuple[str, str, torch.Tensor]]:
    """(file name, tensor name, tensor) for every tensor the model loads."""
    files = safetensors_files(folder)
    for file in files:
        if not os.access(file, os.R_OK):
            raise ModelLoadError(f"{file} is not readable by uid {os.getuid()}; chmod a+r the model files")
    with ExitStack() as stack:
        handles = {file: stack.enter_context(safe_open(str(file), "pt")) for file in files}
        where = {name: h for h in handles.values() for name in h.keys()}  # noqa: SIM118
        for file, handle in handles.items():
            for name in handle.keys():  # noqa: SIM118 (safe_open is not a dict)
                if name.endswith(IGNORED) or name.endswith(SCALE):
                    continue
                tensor = handle.get_tensor(name)
                if tensor.dtype in fp8.FP8_DTYPES:
                    if name + SCALE not in where:
                        raise ModelLoadError(f"{file.name}: FP8 tensor {name} has no {name + SCALE}")
                    tensor = fp8.dequantize(tensor, where[name + SCALE].get_tensor(name + SCALE), block)
                yield file.name, name, tensor
