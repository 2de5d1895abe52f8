"""The fused MoE layer (experts as stacked tensors, any backend) and the block that routes to it."""

from __future__ import annotations

import re
from dataclasses import replace
from functools import partial

import torch
from torch import nn

from ..backends import fp8
from ..backends.spec import MoESpec
from ..config import ParallelConfig
from ..parallel import comm
from ..parallel.shard import split
from .linear import Linear, sharded_parameter


class FusedMoE(nn.Module):
    """Experts as stacked tensors: w13 [E, 2I, H] (gate/up), w2 [E, H, I]; mxfp4 as *_blocks/*_scales.

    Tensor parallelism splits every expert on the intermediate dimension I (MXFP4 on its 32-value
    scale blocks): each rank computes a partial output for all experts, one all-reduce sums them, the
    w2 bias is loaded on rank 0 only. `spec` describes this rank's slice (what the backend runs)."""

    def __init__(
        self, spec: MoESpec, parallel: ParallelConfig, routing_bias: nn.Parameter | None = None
    ) -> None:
        super().__init__()
        self.routing_bias = [routing_bias]  # the router's (a list: not registered twice as a parameter)
        unit = 32 if spec.quant == "mxfp4" else 1
        what = "MoE intermediate size"
        self.parallel = parallel
        self.reduce = parallel.tp_size > 1  # one all-reduce sums the ranks' partial outputs
        self.first, size = split(spec.intermediate_size, parallel.tp_size, parallel.rank, unit, what)
        self.full_intermediate = spec.intermediate_size
        # the loader builds under the model's dtype: that is what the activations will be
        dtype = str(torch.get_default_dtype()).removeprefix("torch.")
        self.spec = spec = replace(spec, intermediate_size=size, act_dtype=dtype)
        for name, (shape, full_shape, dtype) in self._shapes(spec, size).items():
            self.register_parameter(
                name, sharded_parameter(shape, full_shape, partial(self._load, name), dtype)
            )
        self.backend = None
        self._weights: dict[str, torch.Tensor] | None = None

    def _shapes(self, spec: MoESpec, size: int) -> dict[str, tuple[tuple, tuple, torch.dtype | None]]:
        """name -> (this rank's shape, the checkpoint's shape, dtype); default dtype for bf16 weights."""
        e, h, full = spec.num_experts, spec.hidden_size, self.full_intermediate
        if spec.quant == "mxfp4":
            u8 = torch.uint8
            shapes = {
                "w13_blocks": (lambda i: (e, 2 * i, h // 32, 16), u8),
                "w13_scales": (lambda i: (e, 2 * i, h // 32), u8),
                "w2_blocks": (lambda i: (e, h, i // 32, 16), u8),
                "w2_scales": (lambda i: (e, h, i // 32), u8),
            }
        else:
            shapes = {"w13": (lambda i: (e, 2 * i, h), None), "w2": (lambda i: (e, h, i), None)}
        if spec.has_bias:
            shapes |= {"w13_bias": (lambda i: (e, 2 * i), None), "w2_bias": (lambda i: (e, h), None)}
        return {name: (shape(size), shape(full), dtype) for name, (shape, dtype) in shapes.items()}

    def local(self, name: str, full: torch.Tensor) -> torch.Tensor:
        """This rank's slice of a full stacked tensor (our layout, all of I); scales count I in blocks."""
        unit = {"w2_blocks": 32, "w2_scales": 32}.get(name, 1)
        if name in ("w13_scale", "w2_scale"):  # FP8 block scales
            unit = self.spec.quant_block
        first, size, half = (
            self.first // unit,
            self.spec.intermediate_size // unit,
            self.full_intermediate // unit,
        )
        if name.startswith("w13"):  # rows 2I: gate/up interleaved (swiglu_oai) or gate rows then up rows
            if self.spec.activation == "swiglu_oai":
                return full.narrow(1, 2 * first, 2 * size)
            return _cat_rows(full.narrow(1, first, size), full.narrow(1, half + first, size))
        if name == "w2_bias":
            return full if self.parallel.rank == 0 else torch.zeros_like(full)
        return full.narrow(2, first, size)

    def _load(self, name: str, param: nn.Parameter, full: torch.Tensor) -> None:
        mine = self.local(name, full)
        if param.shape != mine.shape:
            raise ValueError(f"shape {tuple(full.shape)} does not match the layer's (all ranks) {name}")
        param.data.copy_(mine)

    def load_expert(self, expert: int, role: str, full: torch.Tensor, scale: bool = False) -> None:
        """One expert's own matrix (checkpoints that store them apart): gate / up [I, H], down [H, I]; or,
        scale True, the block scales of an FP8 one (kept FP8 by keep_fp8)."""
        if scale:
            self._load_expert_scale(expert, role, full)
            return
        if self.spec.quant == "fp8_block":
            full = fp8.values_as_stored(full, self.fnuz)
        first, size = self.first, self.spec.intermediate_size
        if role == "down":
            self.w2.data[expert].copy_(full.narrow(1, first, size))
        else:
            rows = slice(0, size) if role == "gate" else slice(size, 2 * size)
            self.w13.data[expert, rows].copy_(full.narrow(0, first, size))

    # FP8 experts -------------------------------------------------------------------------------------
    def keep_fp8(self, block: tuple[int, int], fnuz: bool) -> bool:
        """Hold the experts as an FP8 checkpoint stores them (w13 / w2 e4m3, w13_scale / w2_scale one fp32
        scale per square block) for a backend that multiplies them so. False (nothing changed) where the
        layout does not allow it: non-square blocks, or this rank's slice of I off the block edges (gate
        and up are stacked on block edges; tensor parallelism splits I)."""
        b, spec = block[0], self.spec
        if block[0] != block[1] or self.first % b or spec.intermediate_size % b:
            return False
        e, h, full = spec.num_experts, spec.hidden_size, self.full_intermediate
        dtype = fp8.stored_dtype(fnuz)
        shapes = {  # name -> (shape given I, dtype)
            "w13": (lambda i: (e, 2 * i, h), dtype),
            "w2": (lambda i: (e, h, i), dtype),
            "w13_scale": (lambda i: (e, 2 * i // b, -(-h // b)), torch.float32),
            "w2_scale": (lambda i: (e, -(-h // b), i // b), torch.float32),
        }
        with torch.device(self.w13.device):
            for name, (shape, dt) in shapes.items():
                loader = partial(self._load_fp8, name)
                param = sharded_parameter(shape(spec.intermediate_size), shape(full), loader, dt)
                self.register_parameter(name, param)
        self.spec, self.fnuz, self._weights = replace(spec, quant="fp8_block", quant_block=b), fnuz, None
        return True

    def _load_fp8(self, name: str, param: nn.Parameter, full: torch.Tensor) -> None:
        """Stacked tensors of all of I (random dummy weights): this rank's slice."""
        full = (
            fp8.scales_as_stored(full, self.fnuz)
            if name.endswith("_scale")
            else fp8.values_as_stored(full, self.fnuz)
        )
        mine = self.local(name, full)
        if param.shape != mine.shape:
            raise ValueError(f"shape {tuple(full.shape)} does not match the layer's (all ranks) {name}")
        param.data.copy_(mine)

    def _load_expert_scale(self, expert: int, role: str, full: torch.Tensor) -> None:
        b = self.spec.quant_block
        first, size = self.first // b, self.spec.intermediate_size // b
        full = fp8.scales_as_stored(full, self.fnuz)
        if role == "down":
            self.w2_scale.data[expert].copy_(full.narrow(1, first, size))
        else:
            rows = slice(0, size) if role == "gate" else slice(size, 2 * size)
            self.w13_scale.data[expert, rows].copy_(full.narrow(0, first, size))

    def weights(self) -> dict[str, torch.Tensor]:
        """Built once: parameters are filled in place by the loader, so the dict stays valid."""
        if self._weights is None:
            self._weights = dict(self.named_parameters())
            if self.routing_bias[0] is not None:
                self._weights["routing_bias"] = self.routing_bias[0]
        return self._weights

    def forward(self, x: torch.Tensor, router_logits: torch.Tensor) -> torch.Tensor:
        out = self.backend.forward(x, router_logits, self.weights(), self.spec)
        return comm.all_reduce(out) if self.reduce else out

    def defer_reduce(self) -> bool:
        """As Linear.defer_reduce: the partial output is summed by the norm after it."""
        had, self.reduce = self.reduce, False
        return had


def _cat_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """torch.cat along dim 1, FP8 included (through its bytes: cat has no FP8 kernel on every device)."""
    if a.dtype.itemsize == 1 and a.dtype.is_floating_point:
        return torch.cat([a.view(torch.uint8), b.view(torch.uint8)], dim=1).view(a.dtype)
    return torch.cat([a, b], dim=1)


class MoEBlock(nn.Module):
    """Router (replicated: every rank routes every token) + experts; the router's checkpoint name
    differs per family (gate / router)."""

    def __init__(self, spec: MoESpec, router_name: str, router_bias: bool, parallel: ParallelConfig) -> None:
        super().__init__()
        self.router_name = router_name
        self.add_module(
            router_name, Linear(spec.hidden_size, spec.num_experts, router_bias, quantizable=False)
        )
        self.experts = FusedMoE(spec, parallel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.experts(x, getattr(self, self.router_name)(x))

    def defer_reduce(self) -> bool:
        return self.experts.defer_reduce()


class PerExpertNames:
    """Checkpoints that store each expert's matrices apart (Mixtral, Qwen3-MoE): their names mapped onto
    the stacked w13 / w2 (names: checkpoint matrix name -> gate | up | down)."""

    def __init__(self, block: str, names: dict[str, str]) -> None:
        self.names = names
        self.pattern = re.compile(
            rf"(.*\.{block})\.experts\.(\d+)\.({'|'.join(names)})\.weight(_scale_inv)?$"
        )
        self.stacked = re.compile(rf"(.*\.{block})\.experts\.(w13|w2)(_scale)?$")

    def remap(self, model: nn.Module, name: str) -> list[tuple[str, object]] | None:
        m = self.pattern.match(name)
        if not m:
            return None
        prefix, expert, role, scale = m.group(1), int(m.group(2)), self.names[m.group(3)], bool(m.group(4))
        experts = model.get_submodule(f"{prefix}.experts")
        target = f"{prefix}.experts.{'w2' if role == 'down' else 'w13'}{'_scale' if scale else ''}"
        return [(target, lambda p, t: experts.load_expert(expert, role, t, scale))]

    def pieces(self, model: nn.Module, target: str) -> set[str]:
        """Every checkpoint name that fills `target` (all must be present)."""
        m = self.stacked.match(target)
        if not m:
            return set()
        prefix, stacked, scale = m.groups()
        wanted = [n for n, role in self.names.items() if (role == "down") == (stacked == "w2")]
        count = model.get_submodule(f"{prefix}.experts").spec.num_experts
        suffix = "weight_scale_inv" if scale else "weight"
        return {f"{prefix}.experts.{e}.{n}.{suffix}" for e in range(count) for n in wanted}
