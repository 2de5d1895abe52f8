"""Backend selection: the best backend that supports the layer exactly, or a clear error.

Preference order per kind lives here; what each backend supports lives in its module's SUPPORT.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, fields

from ..errors import BackendError
from ..platform import Platform
from .spec import AttentionSpec, LinearSpec, MLASpec, MoESpec, Support

# name -> module (imported lazily: a backend's module may import optional packages)
MODULES = {
    "attention": {"aiter": "aiter_attention", "triton": "triton_attention", "torch": "torch_attention"},
    "mla": {"triton": "triton_mla", "torch": "torch_mla"},
    "linear": {"triton": "triton_fp8_linear", "torch": "torch_linear"},
    "moe": {
        "aiter": "aiter_moe",
        "triton": "triton_moe",
        "triton_a8w4": "triton_moe_a8w4",
        "triton_kernels": "triton_kernels_moe",
        "torch": "torch_moe",
    },
}
PREFERENCE = {
    "attention": ("aiter", "triton", "torch"),
    "mla": ("triton", "torch"),
    "linear": ("triton", "torch"),
    # triton_kernels before ours: on the H100 its matmul_ogs is 5-10x faster than our fused kernel today
    # (docs/performance.md); ours stays the exact-match path wherever the real triton_kernels is missing.
    "moe": ("aiter", "triton_kernels", "triton", "torch"),
}


# Backends that change the math (not exact to the model's own): never chosen unless named; `atom backends`
# says so next to the others.
OPT_IN = {"moe": {"triton_a8w4": "opt-in (--moe-backend triton_a8w4): activations quantized to MXFP8"}}


def preference(kind: str, platform: Platform) -> tuple[str, ...]:
    """On the CPU, Triton runs only in its interpreter (a correctness tool, far slower): torch comes first."""
    order = PREFERENCE[kind]
    return ("torch", *(n for n in order if n != "torch")) if platform.kind == "cpu" else order


@dataclass
class Selection:
    name: str
    module: object
    support: Support
    rejected: dict[str, str]  # backend -> why not


def support_of(kind: str, name: str) -> Support:
    """From `<module>_support` where a backend keeps it apart (its module imports optional packages)."""
    separate = f"{__package__}.{MODULES[kind][name]}_support"
    return (
        importlib.import_module(separate) if importlib.util.find_spec(separate) else _module(kind, name)
    ).SUPPORT


def _module(kind: str, name: str):
    return importlib.import_module(f".{MODULES[kind][name]}", __package__)


def implemented(kind: str, name: str) -> bool:
    return importlib.util.find_spec(f"{__package__}.{MODULES[kind][name]}") is not None


def why_not(
    support: Support, spec: AttentionSpec | MLASpec | MoESpec | LinearSpec, platform: Platform
) -> str | None:
    """None if the backend can run this layer on this platform exactly; else the first reason it cannot."""
    if platform.kind not in support.devices:
        return f"runs on {sorted(support.devices)}, not {platform.kind}"
    if support.archs and platform.arch not in support.archs:
        return f"arch {platform.arch} not in {sorted(support.archs)}"
    for probe in support.requires:
        if not platform.has(probe):
            return f"needs {probe}: {platform.reasons.get(probe, 'not present')}"
    names = {f.name for f in fields(spec)}
    if isinstance(spec, MoESpec):
        checks = [
            (spec.quant in support.quants, f"weight quant {spec.quant} not in {sorted(support.quants)}"),
            (
                spec.activation in support.activations,
                f"activation {spec.activation} not in {sorted(support.activations)}",
            ),
            (spec.routing in support.routings, f"routing {spec.routing} not in {sorted(support.routings)}"),
            (not spec.shared_experts or support.shared_experts, "no shared experts"),
            (not spec.expert_parallel or support.expert_parallel, "no expert parallelism"),
            (not spec.has_bias or support.biases, "no expert biases"),
            (
                not support.act_dtypes or spec.act_dtype in support.act_dtypes,
                f"activations in {spec.act_dtype}, not {sorted(support.act_dtypes)}",
            ),
        ]
    elif isinstance(spec, MLASpec):
        checks = []  # the latent layout is the only one there is
    elif isinstance(spec, LinearSpec):
        checks = [
            (spec.quant in support.quants, f"weight quant {spec.quant} not in {sorted(support.quants)}"),
            (
                not support.act_dtypes or spec.act_dtype in support.act_dtypes,
                f"activations in {spec.act_dtype}, not {sorted(support.act_dtypes)}",
            ),
        ]
    else:
        assert "head_dim" in names
        checks = [
            (
                not support.head_dims or spec.head_dim in support.head_dims,
                f"head_dim {spec.head_dim} not in {sorted(support.head_dims)}",
            ),
            (not spec.sinks or support.sinks, "no attention sinks"),
            (not spec.sliding_window or support.sliding_window, "no sliding window"),
            (
                spec.kv_layout in support.kv_layouts,
                f"KV layout {spec.kv_layout} not in {sorted(support.kv_layouts)}",
            ),
        ]
    return next((reason for ok, reason in checks if not ok), None)


def select(
    kind: str,
    spec: AttentionSpec | MLASpec | MoESpec | LinearSpec,
    platform: Platform,
    forced: str | None = None,
) -> Selection:
    if forced is not None and forced not in MODULES[kind]:
        raise BackendError(f"unknown {kind} backend {forced!r}; choose from {sorted(MODULES[kind])}")
    rejected: dict[str, str] = {}
    for name in (forced,) if forced else preference(kind, platform):
        support = support_of(kind, name)
        reason = why_not(support, spec, platform)
        if reason is None and not implemented(kind, name):
            reason = "kernel module not implemented in this version"
        if reason is None:
            return Selection(name, _module(kind, name), support, rejected)
        rejected[name] = reason
    if forced:
        raise BackendError(
            f"--{kind.replace('_', '-')}-backend {forced} cannot run this layer on "
            f"{platform.arch}: {rejected[forced]}"
        )
    raise BackendError(f"no {kind} backend supports this layer on {platform.arch}: {rejected}")
