"""MoE layer microbenchmark: every available backend at gpt-oss shapes, under CUDA graphs, next to the floors.

Floors, from the device's own copy bandwidth and bf16 matmul rate, measured first (bench/floors.py):
  bandwidth: bytes of the experts a batch touches (MXFP4 nibbles + scales + biases) / copy bytes per second
  compute:   2 * M * top_k * (2I*H + H*I) flops / matmul flops per second
"""

from __future__ import annotations

from types import SimpleNamespace

import torch

from ..backends import registry
from ..backends.routing import TOPK_SOFTMAX
from ..backends.spec import MoESpec
from ..platform import detect
from .floors import Floors, measure
from .profile import kernel_table, print_kernel_table

SHAPES = {
    "gpt-oss-20b": MoESpec(32, 4, 2880, 2880, "mxfp4", "swiglu_oai", TOPK_SOFTMAX, has_bias=True),
    "gpt-oss-120b": MoESpec(128, 4, 2880, 2880, "mxfp4", "swiglu_oai", TOPK_SOFTMAX, has_bias=True),
}


def rel_err(got: torch.Tensor, ref: torch.Tensor) -> float:
    """||got - ref|| / ||ref||, in fp32."""
    return ((got.float() - ref.float()).norm() / ref.float().norm()).item()


def poisoned(*shape, **kw) -> torch.Tensor:
    """A workspace filled with NaN (fused_moe's `alloc`): a kernel that reads what it never wrote shows."""
    return torch.full(shape, float("nan"), **kw)


def random_mxfp4_experts(spec: MoESpec, device: str, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Random nibbles with scales near 2^-7 (values of a trained layer's size), biases bf16."""
    e, h, i = spec.num_experts, spec.hidden_size, spec.intermediate_size
    w = {}
    for name, (rows, cols) in {"w13": (2 * i, h), "w2": (h, i)}.items():
        w[f"{name}_blocks"] = torch.randint(
            0, 256, (e, rows, cols // 32, 16), dtype=torch.uint8, device=device, generator=gen
        )
        w[f"{name}_scales"] = torch.randint(
            118, 123, (e, rows, cols // 32), dtype=torch.uint8, device=device, generator=gen
        )
        w[f"{name}_bias"] = (torch.randn(e, rows, device=device, generator=gen) * 0.01).to(torch.bfloat16)
    return w


def floors_us(spec: MoESpec, m: int, floors: Floors) -> tuple[float, float]:
    e, k, h, i = spec.num_experts, spec.top_k, spec.hidden_size, spec.intermediate_size
    active = e * (1 - (1 - k / e) ** m)  # expected distinct experts hit by m tokens
    per_expert = 3 * h * i / 2 + 3 * h * i / 32 + 2 * (3 * i + h) / 2  # nibbles + scales + bf16 biases
    bandwidth = active * per_expert / floors.copy_bytes_per_s * 1e6
    compute = 2 * m * k * 3 * h * i / floors.matmul_flops_per_s * 1e6
    return bandwidth, compute


def time_us(fn, graphs: bool, iters: int = 50) -> float:
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    if graphs:
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        fn = graph.replay
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    fn()
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters * 1e3


def run_moe_bench(
    shapes: list[str], ms: list[int], backends: list[str] | None, seed: int = 0, profile: bool = False
) -> list[dict]:
    platform = detect()
    assert platform.device == "cuda", "the MoE microbenchmark needs a GPU"
    gen = torch.Generator(device="cuda").manual_seed(seed)
    floors = measure()
    rows = [{"floors": floors.as_dict()}]  # what the floor columns divide by, measured here first
    for shape in shapes:
        spec = SHAPES[shape]
        w = random_mxfp4_experts(spec, "cuda", gen)
        layer = SimpleNamespace(spec=spec, weights=lambda w=w: w)
        names = backends or [n for n in registry.PREFERENCE["moe"] if registry.implemented("moe", n)]
        usable = {}
        for name in names:
            reason = registry.why_not(registry.support_of("moe", name), spec, platform)
            if reason:
                rows.append({"shape": shape, "backend": name, "skipped": reason})
                continue
            module = registry.select("moe", spec, platform, name).module
            if hasattr(module, "prepare"):
                module.prepare(layer)
            usable[name] = module
        for m in ms:
            x = torch.randn(m, spec.hidden_size, device="cuda", generator=gen).to(torch.bfloat16)
            logits = torch.randn(m, spec.num_experts, device="cuda", generator=gen)
            ref = usable["torch"].forward(x, logits, w, spec).float() if "torch" in usable else None
            bandwidth, compute = floors_us(spec, m, floors)
            for name, module in usable.items():

                def call(module=module, x=x, logits=logits, w=w, spec=spec):
                    # a backend that hands some batches to another is timed on its own kernels
                    return getattr(module, "own_forward", module.forward)(x, logits, w, spec)

                out = call().float()
                err = rel_err(out, ref) if ref is not None else None
                own = None  # a backend with its own numerics contract (A8W4): error against its statement
                if hasattr(module, "reference_forward"):
                    statement = module.reference_forward(x, logits, w, spec).float()
                    own = rel_err(out, statement)
                graphs = name != "torch"  # the reference syncs on the host (unique experts): eager only
                rows.append({
                    "shape": shape, "backend": name, "M": m, "us": round(time_us(call, graphs, 50 if graphs else 5), 1),
                    "cuda_graphs": graphs, "floor_bw_us": round(bandwidth, 1), "floor_compute_us": round(compute, 1),
                    "rel_err_vs_torch": err, "rel_err_vs_own_reference": own,
                })  # fmt: skip
                if profile:
                    print_kernel_table(f"{shape} {name} M={m}", kernel_table(call, 10, "cuda"), top=8)
    return rows


def print_moe_table(rows: list[dict]) -> None:
    print(
        f"{'shape':14} {'backend':15} {'M':>6} {'time us':>10} {'bw floor':>9} {'fl floor':>9} {'rel err':>9}"
    )
    for r in rows:
        if "floors" in r:
            print(f"floors measured on {r['floors']['device']}: {r['floors']}")
            continue
        if "skipped" in r:
            print(f"{r['shape']:14} {r['backend']:15} skipped: {r['skipped']}")
            continue
        err = f"{r['rel_err_vs_torch']:.1e}" if r["rel_err_vs_torch"] is not None else "-"
        if r.get("rel_err_vs_own_reference") is not None:
            err += f" (own {r['rel_err_vs_own_reference']:.1e})"
        print(
            f"{r['shape']:14} {r['backend']:15} {r['M']:>6} {r['us']:>10.1f} "
            f"{r['floor_bw_us']:>9.1f} {r['floor_compute_us']:>9.1f} {err:>9}"
        )
