"""The tensors of an HF checkpoint folder (one or several safetensors files), in file order, with FP8
block-quantized weights dequantized on the way (their scales consumed), except those the model keeps
in FP8, which come as stored, each followed by its scales."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import torch
from safetensors import safe_open

from ..backends import fp8
from ..errors import ModelLoadError

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


def is_fp8(config: dict) -> bool:
    return (config.get("quantization_config") or {}).get("quant_method") == "fp8"


def fp8_weights(folder: Path) -> set[str]:
    """Names of the FP8 tensors, read from the files' headers (no tensor is loaded)."""
    names = set()
    for file in safetensors_files(folder):
        with safe_open(str(file), "pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open is not a dict)
                if handle.get_slice(name).get_dtype().startswith("F8"):
                    names.add(name)
    return names


def fp8_block(config: dict) -> tuple[int, int]:
    quant = config.get("quantization_config") or {}
    return tuple(quant.get("weight_block_size") or (128, 128))  # type: ignore[return-value]


def tensors(
    folder: Path, block: tuple[int, int], keep: frozenset[str] = frozenset()
) -> Iterator[tuple[str, str, torch.Tensor]]:
    """(file name, tensor name, tensor) for every tensor the model loads; keep: FP8 weights yielded as
    stored, then their `_scale_inv` scales."""
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
                    scale = where[name + SCALE].get_tensor(name + SCALE)
                    if name in keep:
                        yield file.name, name, tensor
                        yield file.name, name + SCALE, scale
                        continue
                    tensor = fp8.dequantize(tensor, scale, block)
                yield file.name, name, tensor
