"""gpt-oss MoE through the real triton_kernels (`matmul_ogs`), as shipped with Triton 3.5 / 3.6 / later.

Supported API eras, detected once from what the installed copy exposes:
  3.5  routing from `triton_kernels.routing.routing`; `FusedActivation(specs, args, reduction_n)`
  3.6  `topk` -> SparseMatrix + `make_ragged_tensor_metadata`; `FnSpecs(..., reduction_n=2)`
  3.7+ `matmul` instead of `matmul_ogs`, `b_mx_scale` instead of `weight_scale`
and both names of the CDNA4 (gfx950) MX scale layout class (`GFX950MXScaleLayout`, later `CDNA4MXScaleLayout`).
Only the layer it implements: MXFP4 or bf16 experts, interleaved clamped SwiGLU, top-k-then-softmax routing.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from dataclasses import dataclass

import torch

from ..platform.device import gpu_arch
from . import triton_moe, triton_moe_tiles
from .row_buckets import PAD_STEP, padded_rows
from .spec import MoESpec
from .triton_kernels_moe_support import SUPPORT  # noqa: F401  (what this backend declares)


@dataclass(frozen=True)
class Api:
    era: str  # "3.5" | "3.6" | "3.7+"
    matmul: object
    module: object  # triton_kernels.matmul_ogs or triton_kernels.matmul


@functools.cache
def api() -> Api:
    """Which era the installed copy is (looked up once: forward calls it per layer)."""
    if importlib.util.find_spec("triton_kernels.matmul_ogs"):
        module = importlib.import_module("triton_kernels.matmul_ogs")
        era = "3.5" if importlib.util.find_spec("triton_kernels.routing") else "3.6"
        return Api(era, module.matmul_ogs, module)
    module = importlib.import_module("triton_kernels.matmul")
    return Api("3.7+", module.matmul, module)


def scale_layout_class(layout_module, cdna4: bool):
    """The CDNA4 MX scale layout was renamed; either name is accepted."""
    if not cdna4:
        return None
    for name in ("CDNA4MXScaleLayout", "GFX950MXScaleLayout"):
        if hasattr(layout_module, name):
            return getattr(layout_module, name)
    raise ImportError("triton_kernels has neither CDNA4MXScaleLayout nor GFX950MXScaleLayout")


def _mx_weight(blocks: torch.Tensor, scales: torch.Tensor):
    """Checkpoint [E, N, K/32, 16] nibbles + [E, N, K/32] scales -> triton_kernels tensors, K on dim 1."""
    from triton_kernels.tensor import FP4, convert_layout, wrap_torch_tensor
    from triton_kernels.tensor_details import layout

    e, n = blocks.shape[:2]
    values = blocks.reshape(e, n, -1).transpose(-2, -1)  # [E, K/2, N] bytes
    scales = scales.transpose(-2, -1)  # [E, K/32, N]
    if torch.version.hip:
        value_layout, value_opts = layout.StridedLayout, {}
        cdna4 = scale_layout_class(layout, gpu_arch(blocks.device) == "gfx950")
        scale_layout, scale_opts = (cdna4 or layout.StridedLayout), {}
    else:
        value_layout, value_opts = layout.make_default_matmul_mxfp4_w_layout(mx_axis=1)
        scale_layout, scale_opts = layout.make_default_matmul_mxfp4_w_scale_layout(mx_axis=1, num_warps=8)
    values = convert_layout(wrap_torch_tensor(values, dtype=FP4), value_layout, **value_opts)
    return values, convert_layout(wrap_torch_tensor(scales), scale_layout, **scale_opts)


def prepare(layer) -> None:
    """Convert the layer's expert weights once, into the layouts matmul_ogs reads (kept beside the originals)."""
    spec: MoESpec = layer.spec
    w = layer.weights()
    a = api()
    scale_key = "weight_scale" if a.era != "3.7+" else "b_mx_scale"
    prepared = {}
    for name in ("w13", "w2"):
        if spec.quant == "mxfp4":
            values, scales = _mx_weight(w[f"{name}_blocks"], w[f"{name}_scales"])
            precision = a.module.PrecisionConfig(**{scale_key: scales})
        else:
            values, precision = w[name].transpose(-2, -1).contiguous(), a.module.PrecisionConfig()
        bias = w[f"{name}_bias"].float() if spec.has_bias else None
        prepared[name] = (values, bias, precision)
    prepared["activation"] = _swiglu(a, spec)  # built once, not per forward
    w["triton_kernels"] = prepared


def _routing(a: Api, logits: torch.Tensor, top_k: int):
    if a.era == "3.5":
        from triton_kernels.routing import routing

        return routing(logits, top_k, sm_first=False)
    from triton_kernels.tensor import make_ragged_tensor_metadata
    from triton_kernels.topk import topk

    sparse = topk(logits, top_k, apply_softmax=True)  # top-k of the logits, softmax over those k
    dispatch, combine = sparse.mask_metadata.row_sorted_indx, sparse.mask_metadata.col_sorted_indx
    ragged = make_ragged_tensor_metadata(sparse.mask_metadata.col_sum, dispatch.shape[0])
    routing_data = a.module.RoutingData(
        sparse.vals.flatten()[combine], ragged.block_sizes, logits.shape[-1], top_k, ragged
    )
    return routing_data, a.module.GatherIndx(combine, dispatch), a.module.ScatterIndx(dispatch, combine)


def _swiglu(a: Api, spec: MoESpec):
    from triton_kernels.swiglu import swiglu_fn

    args = (spec.swiglu_alpha, spec.swiglu_limit)
    if a.era == "3.5":
        return a.module.FusedActivation(a.module.FnSpecs("swiglu", swiglu_fn, ("alpha", "limit")), args, 2)
    specs = a.module.FnSpecs("swiglu", swiglu_fn, ("alpha", "limit"), reduction_n=2)
    return a.module.FusedActivation(specs, args)


@functools.lru_cache(maxsize=8)
def padding_logits(num_experts: int, top_k: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Router logits for padding rows (as many as padding can add): row r picks experts r*k .. r*k+k-1
    (mod E), so padding is spread over the experts instead of piling onto the first k."""
    rows = torch.arange(PAD_STEP - 1, device=device)[:, None]
    picks = (rows * top_k + torch.arange(top_k, device=device)) % num_experts
    logits = torch.full((PAD_STEP - 1, num_experts), -1e4, dtype=dtype, device=device)
    return logits.scatter_(1, picks, 0.0)


def forward(x: torch.Tensor, router_logits: torch.Tensor, w: dict, spec: MoESpec) -> torch.Tensor:
    """The layer; batches our own GEMV runs faster (triton_moe_tiles.gemv_is_faster: decode) go to it."""
    if triton_moe_tiles.gemv_is_faster(x.shape[0], spec, x.device):
        return triton_moe.forward(x, router_logits, w, spec)
    return own_forward(x, router_logits, w, spec)


def own_forward(x: torch.Tensor, router_logits: torch.Tensor, w: dict, spec: MoESpec) -> torch.Tensor:
    """The layer through triton_kernels alone, at any batch (the benchmarks compare it with ours)."""
    n = x.shape[0]
    pad = padded_rows(n) - n  # a bounded set of token counts: see row_buckets
    if pad:
        x = torch.cat([x, x.new_zeros(pad, x.shape[1])])
        filler = padding_logits(router_logits.shape[1], spec.top_k, router_logits.dtype, router_logits.device)
        router_logits = torch.cat([router_logits, filler[:pad]])
    out = _forward(x, router_logits, w, spec)
    return out[:n] if pad else out


def _forward(x: torch.Tensor, router_logits: torch.Tensor, w: dict, spec: MoESpec) -> torch.Tensor:
    a = api()
    routing_data, gather, scatter = _routing(a, router_logits, spec.top_k)
    w13, b13, p13 = w["triton_kernels"]["w13"]
    w2, b2, p2 = w["triton_kernels"]["w2"]
    h = a.matmul(
        x,
        w13,
        b13,
        routing_data,
        gather_indx=gather,
        precision_config=p13,
        fused_activation=w["triton_kernels"]["activation"],
    )
    return a.matmul(
        h, w2, b2, routing_data, scatter_indx=scatter, precision_config=p2, gammas=routing_data.gate_scal
    )
