"""Build a model from an HF folder: config.json + *.safetensors (sharded or not), or dummy weights."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..config import ParallelConfig
from ..errors import ModelLoadError
from ..layers.linear import Linear
from ..layers.moe import FusedMoE
from . import checkpoint
from .common import Attention, CausalLM
from .registry import build_model


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.exists():
        raise ModelLoadError(f"{folder} has no config.json; point --model at an HF-format model folder")
    return json.loads(path.read_text())


def check_shards(folder: Path, parallel: ParallelConfig) -> None:
    """Raise now (before any worker starts) if the model cannot split over parallel.tp_size ranks:
    every rank's layers are built on the meta device, which checks every split and allocates nothing."""
    config = read_config(folder)
    with torch.device("meta"):
        for rank in range(parallel.tp_size):
            build_model(config, parallel.for_rank(rank))


def load_model(
    folder: Path,
    dtype: torch.dtype,
    device: torch.device,
    parallel: ParallelConfig,
    load_format: str = "auto",
    seed: int = 0,
    fp8_linear=None,
    fnuz: bool = False,
    experts_fp8=None,
) -> CausalLM:
    """fp8_linear: the chosen linear backend of an FP8 checkpoint; where it keeps FP8 weights, the
    quantizable linears whose checkpoint weights are FP8 keep them (fnuz: as gfx942's variant), and so
    do the MoE layers for which experts_fp8(spec) says a backend multiplies FP8 experts."""
    config = read_config(folder)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            model = build_model(config, parallel)
    finally:
        torch.set_default_dtype(previous)
    kept: frozenset[str] = frozenset()
    if fp8_linear is not None and fp8_linear.KEEPS_FP8:
        stored = None if load_format == "dummy" else checkpoint.fp8_weights(folder)
        kept = keep_fp8(model, fp8_linear, checkpoint.fp8_block(config), fnuz, stored, experts_fp8)
    if load_format == "dummy":
        init_dummy(model, seed)
    else:
        load_weights(model, folder, kept)
    for attention in model.attention_layers():
        if isinstance(attention, Attention):
            attention.fuse_qkv()  # the checkpoint's q/k/v become views into one weight
    return model.eval()


def keep_fp8(
    model: CausalLM, backend, block: tuple[int, int], fnuz: bool, stored: set[str] | None, experts_fp8=None
) -> frozenset[str]:
    """Make the quantizable linears FP8 (those whose weights are FP8 in the checkpoint; with dummy
    weights, stored None, all of them), and the experts where experts_fp8 allows. Returns the names of
    the checkpoint tensors that stay FP8."""
    kept: set[str] = set()
    for prefix, module in model.named_modules():
        name = f"{prefix}.weight"
        if isinstance(module, Linear) and module.quantizable and (stored is None or name in stored):
            if module.keep_fp8(backend, block, fnuz):  # else its rank's slice is off the block edges
                kept.add(name)
        elif isinstance(module, FusedMoE) and experts_fp8 is not None and experts_fp8(module.spec):
            names = set()
            if model.expert_names:  # checkpoints with one tensor per expert matrix (DeepSeek-V3)
                names = model.pieces(f"{prefix}.w13") | model.pieces(f"{prefix}.w2")
            if (stored is None or names <= stored) and module.keep_fp8(block, fnuz):
                kept |= names
    return frozenset(kept)


def load_weights(model: CausalLM, folder: Path, keep: frozenset[str] = frozenset()) -> None:
    params = dict(model.named_parameters(remove_duplicate=False))
    loaded: set[str] = set()
    pieces: dict[str, set[str]] = {}  # parameter filled from several checkpoint tensors -> names seen
    for file, name, tensor in checkpoint.tensors(folder, checkpoint.fp8_block(read_config(folder)), keep):
        for target, copy in model.remap(name):
            if target not in params:
                raise ModelLoadError(
                    f"{file}: tensor {name} has no place in {type(model).__name__} (unexpected tensor)"
                )
            param = params[target]
            fp8_stored = param.dtype.itemsize == 1 and param.dtype.is_floating_point  # the loader converts
            value = tensor.to(param.dtype) if param.dtype.is_floating_point and not fp8_stored else tensor
            try:
                if copy is not None:
                    copy(param, value)
                    pieces.setdefault(target, set()).add(name)
                elif hasattr(param, "weight_loader"):
                    param.weight_loader(param, value)
                elif param.shape != value.shape:
                    raise ValueError(f"shape {tuple(value.shape)} does not match {tuple(param.shape)}")
                else:
                    param.data.copy_(value)
            except (ValueError, RuntimeError) as e:
                raise ModelLoadError(f"{file}: tensor {name} -> {target}: {e}") from e
            loaded.add(target)
    if model.args.tie_word_embeddings:
        loaded.add("lm_head.weight")
    missing = sorted(set(params) - loaded)
    for target, seen in pieces.items():  # e.g. one expert of a stacked expert tensor absent
        missing += sorted(model.pieces(target) - seen)
    if missing:
        shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
        raise ModelLoadError(f"{folder}: missing tensors: {shown}")


def init_dummy(model: CausalLM, seed: int) -> None:
    """Random weights with sane scales (for benchmarks of big shapes without downloads). Each tensor is
    drawn at its checkpoint shape and loaded like a checkpoint's, so every tp_size gets the same model."""
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)  # on the device: big shapes fill in seconds
    for name, p in model.named_parameters():
        shape = getattr(p, "full_shape", p.shape)
        if p.dtype == torch.uint8:
            hi = 124 if name.endswith("_scales") else 256
            lo = 118 if name.endswith("_scales") else 0
            full = torch.randint(lo, hi, shape, generator=gen, dtype=torch.uint8, device=device)
        elif name.endswith("norm.weight"):
            full = torch.ones(shape, dtype=p.dtype, device=device)
        elif name.endswith(("weight_scale_inv", "w13_scale", "w2_scale")):  # FP8 blocks: N(0, 1) x 0.02
            full = torch.full(shape, 0.02, device=device)
        elif p.dtype.itemsize == 1 and p.dtype.is_floating_point:
            full = torch.randn(shape, generator=gen, device=device)  # the loader makes it FP8
        else:
            full = (torch.randn(shape, generator=gen, device=device) * 0.02).to(p.dtype)
        if hasattr(p, "weight_loader"):
            p.weight_loader(p, full)
        else:
            p.data.copy_(full)
        del full
