"""`atom backends`: what each layer type gets on a (real or simulated) platform, and why not the others."""

from __future__ import annotations

from pathlib import Path

from ..config import ParallelConfig
from ..errors import BackendError
from ..models import checkpoint
from ..models.loader import read_config
from ..models.registry import build_model
from ..platform import detect, simulated
from . import registry
from .spec import LinearSpec


def backend_report(
    model: Path,
    arch: str | None,
    ck: bool,
    triton_kernels: bool,
    moe_backend: str | None,
    attention_backend: str | None,
) -> dict:
    import torch

    platform = simulated(arch, ck=ck, triton_kernels=triton_kernels) if arch else detect()
    config = read_config(model)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32 if platform.kind == "cpu" else torch.bfloat16)  # what serve runs
    try:
        with torch.device("meta"):
            net = build_model(config, ParallelConfig())
    finally:
        torch.set_default_dtype(previous)
    dtype = "float32" if platform.kind == "cpu" else "bfloat16"
    linear = [LinearSpec("fp8_block", dtype)] if checkpoint.is_fp8(config) else []
    layers, seen = [], set()
    for kind, specs, forced in (
        ("linear", linear, None),
        (
            "attention",
            [a.spec for a in net.attention_layers() if a.backend_kind == "attention"],
            attention_backend,
        ),
        ("mla", [a.spec for a in net.attention_layers() if a.backend_kind == "mla"], attention_backend),
        ("moe", [m.spec for m in net.moe_layers()], moe_backend),
    ):
        for spec in specs:
            if (kind, spec) in seen:
                continue
            seen.add((kind, spec))
            try:
                sel = registry.select(kind, spec, platform, forced)
                chosen, rejected = sel.name, dict(sel.rejected)
                for name in registry.preference(kind, platform):
                    if name != chosen and name not in rejected:
                        rejected[name] = (
                            registry.why_not(registry.support_of(kind, name), spec, platform)
                            or f"supported, but {chosen} is preferred"
                        )
                for name, why in registry.OPT_IN.get(kind, {}).items():
                    if name != chosen:
                        reason = registry.why_not(registry.support_of(kind, name), spec, platform)
                        rejected[name] = f"{why}" + (f"; and here: {reason}" if reason else "")
            except BackendError as e:
                chosen, rejected = f"ERROR: {e}", {}
            layers.append({"kind": kind, "spec": str(spec), "chosen": chosen, "rejected": rejected})
    report = {"platform": f"{platform.vendor} {platform.arch} features={platform.features}", "layers": layers}
    compiled = compiled_kernels(platform.arch)
    if compiled is not None:
        report["compiled"] = compiled
    return report


def compiled_kernels(arch: str) -> dict | None:
    """What our Triton kernels use on an AMD arch, from the table CI compiles (amd_compile.py), or None
    for an arch it does not cover."""
    import json

    from .amd_compile import TABLE

    table = json.loads(TABLE.read_text())
    rows = [row for row in table["rows"] if row["arch"] == arch]
    return {"triton": table["triton"], "table": TABLE.name, "kernels": rows} if rows else None
