"""Every Triton kernel of the engine, compiled for AMD Instinct targets on any machine (no GPU needed):
Triton's HIP backend runs on the CPU and returns the code object, its AMDGCN assembly and resource use.

How the launches are found: the real launch code (paged attention, the MoE paths for every tile of an
arch's table, norms, rotary) runs at real model shapes on CPU tensors with `JITFunction.run` replaced
by a recorder, and the backends' tile lookups answering for the arch being compiled. So what is compiled
is exactly what the engine would launch there: the same arguments, types and constexprs, no second copy
of any signature to drift, and what the JIT specializes on taken from its own binder for the arch's HIP
backend (16-byte-aligned pointers and integers that 16 divides, buffers under 2 GiB, integers equal to 1).
Then each distinct launch is compiled for its arch. The recorder answers for CUDA targets (smNN) too:
bench/sm90_compile.py compiles our sm90 tiles the same way.

The table (amd_kernels.json, next to the tile tables) is regenerated with
`python -m atom.backends.amd_compile --write` and checked for drift in CI (`--check`), like the
Dockerfiles; a kernel that spills registers or needs more LDS than its arch has fails the check with a
message naming kernel, tile and arch. It must run without TRITON_INTERPRET (the interpreter replaces
the JIT functions that are compiled here).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import make_backend
from triton.runtime.jit import JITFunction, create_function_from_signature

from . import (
    triton_allreduce,
    triton_attention,
    triton_fp8_linear,
    triton_gemv,
    triton_mla,
    triton_moe,
    triton_moe_tiles,
    triton_pointwise,
)
from .routing import SIGMOID_GROUPED, TOPK_SOFTMAX
from .spec import AttentionSpec, MoESpec
from .triton_moe_a8w4_support import SUPPORT as A8W4_SUPPORT

# LDS a workgroup may use (the CU's LDS): CDNA3 64 KiB, CDNA4 160 KiB
LDS_BYTES = {"gfx942": 64 * 1024, "gfx950": 160 * 1024}
VGPRS_PER_LANE = 512  # gfx90a and later: one file for arch VGPRs and AGPRs, wave64
MAX_WAVES_PER_SIMD = 8
TABLE = Path(__file__).with_name("amd_kernels.json")
# The shapes the engine serves: gpt-oss (MXFP4 experts, attention sinks, sliding window) and a
# Llama/Mixtral-style model (bf16 experts, plain attention, head_dim 128).
MODELS = {
    "gpt-oss": (
        2880,
        AttentionSpec(64, 8, 64, sliding_window=128, sinks=True),
        MoESpec(32, 4, 2880, 2880, "mxfp4", "swiglu_oai", TOPK_SOFTMAX, has_bias=True),
    ),
    "mixtral": (
        4096,
        AttentionSpec(32, 8, 128),
        MoESpec(8, 2, 4096, 14336, "bf16", "silu", TOPK_SOFTMAX),
    ),
}

# DeepSeek-V3's routed experts, FP8 with 128x128 block scales
DEEPSEEK_FP8_MOE = MoESpec(
    256, 8, 7168, 2048, "fp8_block", "silu", SIGMOID_GROUPED, groups=(8, 4), routed_scaling=2.5
)
MLA_HEADS = (16, 128)  # DeepSeek-V3's query heads per rank at 8 ranks and at 1


@dataclass(frozen=True)
class Launch:
    module: str
    kernel: str
    signature: tuple[tuple[str, str], ...]  # (argument, Triton type or "constexpr")
    constexprs: tuple[tuple[str, object], ...]
    num_warps: int
    num_stages: int
    # what the JIT knows of the arguments' values and specializes on: (argument index, attributes), e.g.
    # 16-byte-aligned pointers and integers that 16 divides ("tt.divisibility"), buffers under 2 GiB
    attrs: tuple[tuple[int, tuple[tuple[str, int], ...]], ...] = ()

    @property
    def variant(self) -> str:
        """The constexprs and launch options that tell this compile apart from its kernel's others."""
        values = " ".join(f"{k}={v}" for k, v in self.constexprs)
        return f"{values} warps={self.num_warps} stages={self.num_stages}"


def _as_the_jit_would(fn: JITFunction, binder, backend, values: dict, options: dict) -> Launch:
    """The launch as the JIT would compile it for the backend's target, from the JIT's own `binder`: the
    argument types, the values it specializes on as constexprs (integers equal to 1), and the attributes
    (16-byte-aligned pointers and integers that 16 divides, buffers under 2 GiB). Without them a compile
    here would miss what the real launch is specialized on (vector widths follow from the alignment)."""
    _, specialization, _ = binder(*(values[p.name] for p in fn.params))
    signature, constexprs, attrs = [], [], []
    for index, (param, (kind, spec)) in enumerate(zip(fn.params, specialization, strict=True)):
        signature.append((param.name, kind))
        if kind == "constexpr":
            constexprs.append((param.name, values[param.name]))
        elif isinstance(spec, str) and (found := backend.parse_attr(spec)):
            attrs.append((index, tuple((name, value) for name, value in found)))
    return Launch(
        fn.fn.__module__, fn.fn.__name__, tuple(signature), tuple(constexprs), **options, attrs=tuple(attrs)
    )


def target_of(arch: str) -> GPUTarget:
    """gfx942/gfx950 (HIP, wave64) or smNN (CUDA, warp 32): what Triton compiles for."""
    if arch.startswith("sm"):
        return GPUTarget("cuda", int(arch[2:]), 32)
    return GPUTarget("hip", arch, 64)


@contextlib.contextmanager
def recorded_launches(arch: str) -> Iterator[list[Launch]]:
    """Every kernel launch made inside, recorded instead of run, with the tile tables answering for arch."""
    launches: list[Launch] = []

    backend = make_backend(target_of(arch))
    binders: dict[JITFunction, object] = {}  # the JIT's argument binder, made once per kernel

    def record(self: JITFunction, *args, grid, warmup, **kwargs):
        options = {"num_warps": kwargs.pop("num_warps", 4), "num_stages": kwargs.pop("num_stages", 2)}
        values = dict(zip(self.arg_names, args, strict=False)) | kwargs
        if self not in binders:
            binders[self] = create_function_from_signature(self.signature, self.params, backend)
        launches.append(_as_the_jit_would(self, binders[self], backend, values, options))

    modules = [
        m
        for m in (triton_attention, triton_fp8_linear, triton_gemv, triton_mla, triton_moe, triton_pointwise)
        if hasattr(m, "device_arch")
    ]
    saved_run, saved_arch = JITFunction.run, [m.device_arch for m in modules]
    JITFunction.run = record
    for module in modules:
        module.device_arch = lambda device, arch=arch: arch
    try:
        yield launches
    finally:
        JITFunction.run = saved_run
        for module, original in zip(modules, saved_arch, strict=True):
            module.device_arch = original


def launches_for(arch: str) -> list[Launch]:
    """What the engine launches on arch, at the shapes of MODELS, for every tile of the arch's tables."""
    with recorded_launches(arch) as launches:
        for hidden, attention, moe in MODELS.values():
            _norm_and_rotary(hidden, attention)
            _decode_projections(hidden, attention)
            for query_len in (1, 16):  # decode and prefill tiles differ
                _attention(attention, query_len)
            for _, tile in triton_moe_tiles.TILES[arch]:
                launch_moe(moe, tile)
                if moe.quant == "mxfp4" and arch in A8W4_SUPPORT.archs and tile.block_m > 1:
                    launch_moe(moe, tile, activation_quant="mxfp8")  # the opt-in A8W4 variant
        for heads in MLA_HEADS:
            for query_len in (1, 16):
                _mla(heads, query_len)
        for rows in (1, 256):  # the decode and the prefill tiles
            _fp8_linear(rows, arch)
        fp8_rows = triton_moe_tiles.FP8_MAX_BLOCK_M.get(arch, 1 << 30)
        for _, tile in triton_moe_tiles.TILES[arch]:
            if 1 < tile.block_m <= fp8_rows:  # FP8 experts take the GEMM tiles only, up to the cap
                launch_moe(DEEPSEEK_FP8_MOE, tile, arch=arch)
    return list(dict.fromkeys(launches))  # distinct, in first-seen order


def _fp8_linear(rows: int, arch: str) -> None:
    """DeepSeek-V3's q_b_proj (1536 -> 24576) with 128x128 FP8 blocks; gfx942 reads e4m3fnuz."""
    dtype = torch.float8_e4m3fnuz if arch == "gfx942" else torch.float8_e4m3fn
    weight = torch.empty(24576, 1536, dtype=dtype)
    scale = torch.empty(192, 12, dtype=torch.float32)
    triton_fp8_linear.fp8_block_linear(torch.empty(rows, 1536, dtype=torch.bfloat16), weight, scale)


def _decode_projections(hidden: int, spec: AttentionSpec) -> None:
    """q/k/v and a router (with a bias, as gpt-oss has) at batch 1, and the all-reduce after the row-parallel
    o projection, with and without the norm, at 2 and 8 ranks."""
    qkv = torch.empty((spec.num_heads + 2 * spec.num_kv_heads) * spec.head_dim, hidden, dtype=torch.bfloat16)
    router = torch.empty(32, hidden, dtype=torch.bfloat16)
    for weight in (qkv, router):  # the two tiles (wide and narrow N)
        triton_gemv.gemv(torch.empty(1, hidden, dtype=torch.bfloat16), weight, weight[:, 0])
    x = torch.empty(4, hidden, dtype=torch.bfloat16)
    for world in (2, 8):
        ptrs = torch.empty(world, dtype=torch.int64)
        peers = SimpleNamespace(rank=0, world=world, half_bytes=1 << 23, data_ptrs=ptrs, flag_ptrs=ptrs,
                                epoch=torch.empty(2, dtype=torch.int32))  # fmt: skip
        triton_allreduce.all_reduce(x, peers)
        triton_allreduce.all_reduce(x, peers, x, x[0], 1e-5)


def _norm_and_rotary(hidden: int, spec: AttentionSpec) -> None:
    x = torch.empty(4, hidden, dtype=torch.bfloat16)
    weight = torch.empty(hidden, dtype=torch.bfloat16)
    triton_pointwise.rms_norm(x, weight, 1e-5)
    triton_pointwise.rms_norm(x, weight, 1e-5, residual=x)
    q = torch.empty(4, spec.num_heads, spec.head_dim, dtype=torch.bfloat16)
    k = torch.empty(4, spec.num_kv_heads, spec.head_dim, dtype=torch.bfloat16)
    cos = torch.empty(4096, spec.head_dim // 2, dtype=torch.float32)
    positions = torch.zeros(4, dtype=torch.int64)
    triton_pointwise.rotary(positions, q, k, cos, cos)
    cache = torch.empty(8, 16, spec.num_kv_heads, spec.head_dim, dtype=torch.bfloat16)  # as the layer runs it
    triton_pointwise.rotary(positions, q, k, cos, cos, (k, cache, cache, positions))


def _attention(spec: AttentionSpec, query_len: int) -> None:
    seqs, page, blocks = 4, 16, 64
    cache = torch.empty(blocks, page, spec.num_kv_heads, spec.head_dim, dtype=torch.bfloat16)
    meta = _metadata(seqs, query_len, page)
    q = torch.empty(seqs * query_len, spec.num_heads, spec.head_dim, dtype=torch.bfloat16)
    sinks = torch.empty(spec.num_heads, dtype=torch.float32) if spec.sinks else None
    triton_attention.paged_attention(q, cache, cache, meta, spec, sinks, spec.head_dim**-0.5)


def _metadata(seqs: int, query_len: int, page: int):
    from ..layers.context import AttentionMetadata

    tokens = seqs * query_len
    return AttentionMetadata(
        positions=torch.zeros(tokens, dtype=torch.int64),
        slot_mapping=torch.zeros(tokens, dtype=torch.int64),
        seq_idx=torch.zeros(tokens, dtype=torch.int64),
        query_start_loc=torch.arange(0, tokens + 1, query_len, dtype=torch.int64),
        query_lens=torch.full((seqs,), query_len, dtype=torch.int64),
        seq_lens=torch.full((seqs,), 256, dtype=torch.int32),
        block_tables=torch.zeros(seqs, 16, dtype=torch.int64),
        max_query_len=query_len,
        max_seq_len=256,
        block_size=page,
    )


def _mla(heads: int, query_len: int) -> None:
    """DeepSeek-V3's latent: kv_lora_rank 512 + rope 64, `heads` query heads on this rank."""
    meta = _metadata(4, query_len, 16)
    q = torch.empty(4 * query_len, heads, 512 + 64, dtype=torch.bfloat16)
    cache = torch.empty(64, 16, 512 + 64, dtype=torch.bfloat16)
    triton_mla.paged_mla(q, cache, meta, 512, 192**-0.5)


def launch_moe(spec: MoESpec, tile, activation_quant: str | None = None, arch: str = "") -> None:
    """Our MoE layer on 8 tokens of uninitialised experts with this tile: inside recorded_launches, what
    it launches at the spec's real shapes (bench/sm90_compile.py records sm90's this way)."""
    tokens = 8
    x = torch.empty(tokens, spec.hidden_size, dtype=torch.bfloat16)
    ids = torch.arange(tokens * spec.top_k, dtype=torch.int64).remainder(spec.num_experts).view(tokens, -1)
    weights = torch.empty(tokens, spec.top_k, dtype=torch.float32)
    experts = _experts(spec, arch)
    if activation_quant is None:  # as the layer runs it: a GEMV tile routes inside its kernels
        logits = torch.zeros(tokens, spec.num_experts, dtype=torch.bfloat16)
        triton_moe.forward(x, logits, experts, spec, tile=tile)
    else:
        triton_moe.fused_moe(x, weights, ids, experts, spec, tile=tile, activation_quant=activation_quant)


def _experts(spec: MoESpec, arch: str = "") -> dict[str, torch.Tensor]:
    """Uninitialised expert tensors of the real shapes (never read: launches are only recorded)."""
    e, h, i = spec.num_experts, spec.hidden_size, spec.intermediate_size
    w = {}
    for name, (rows, cols) in {"w13": (2 * i, h), "w2": (h, i)}.items():
        if spec.quant == "mxfp4":
            w[f"{name}_blocks"] = torch.empty(e, rows, cols // 32, 16, dtype=torch.uint8)
            w[f"{name}_scales"] = torch.empty(e, rows, cols // 32, dtype=torch.uint8)
        elif spec.quant == "fp8_block":  # gfx942 reads e4m3fnuz
            dtype = torch.float8_e4m3fnuz if arch == "gfx942" else torch.float8_e4m3fn
            b = spec.quant_block
            w[name] = torch.empty(e, rows, cols, dtype=dtype)
            w[f"{name}_scale"] = torch.empty(e, rows // b, cols // b, dtype=torch.float32)
        else:
            w[name] = torch.empty(e, rows, cols, dtype=torch.bfloat16)
        if spec.has_bias:
            w[f"{name}_bias"] = torch.empty(e, rows, dtype=torch.bfloat16)
    return w


def compile_for(launch: Launch, arch: str):
    """The launch compiled for arch (a triton CompiledKernel: .asm holds each stage's text)."""
    from triton.compiler import ASTSource

    fn = getattr(importlib.import_module(launch.module), launch.kernel)
    attrs = {(index,): [list(attr) for attr in attrs] for index, attrs in launch.attrs}
    source = ASTSource(fn, dict(launch.signature), constexprs=dict(launch.constexprs), attrs=attrs)
    options = {"num_warps": launch.num_warps, "num_stages": launch.num_stages}
    return triton.compile(source, target=target_of(arch), options=options)


def compile_launch(launch: Launch, arch: str) -> dict:
    """Compile one launch for arch: resource use from the assembly, and which MFMA instructions it uses."""
    row = {"kernel": launch.kernel, "arch": arch, "variant": launch.variant}
    try:
        compiled = compile_for(launch, arch)
    except Exception as e:  # a tile that does not compile is a finding, not a crash of the table
        return row | {"error": f"{e.__class__.__name__}: {str(e).splitlines()[0][:300]}"}
    asm = compiled.asm["amdgcn"]
    vgpr, agpr = _asm_int(asm, "vgpr_count"), _asm_int(asm, "agpr_count")
    lds = compiled.metadata.shared
    return row | {
        "lds_bytes": lds,
        "vgprs": vgpr,
        "agprs": agpr,
        "sgprs": _asm_int(asm, "sgpr_count"),
        "spills": _asm_int(asm, "vgpr_spill_count") + _asm_int(asm, "sgpr_spill_count"),
        "waves_per_simd": _waves_per_simd(vgpr + agpr, lds, launch.num_warps, arch),
        "mfma": sorted(set(re.findall(r"\b(v_mfma\w+)", asm))),
    }


def _asm_int(asm: str, key: str) -> int:
    found = re.search(rf"\.{key}:\s+(\d+)", asm)
    return int(found.group(1)) if found else 0


def _waves_per_simd(registers: int, lds: int, num_warps: int, arch: str) -> int:
    """Occupancy: what the register file allows (granule 8), and what LDS allows (a workgroup's waves
    spread over a CU's 4 SIMDs), whichever is lower."""
    by_registers = min(MAX_WAVES_PER_SIMD, VGPRS_PER_LANE // max(8, 8 * math.ceil(registers / 8)))
    if not lds:
        return by_registers
    workgroups = LDS_BYTES[arch] // lds
    return min(by_registers, workgroups * num_warps // 4)


def build_table(archs=tuple(LDS_BYTES)) -> dict:
    rows = [compile_launch(launch, arch) for arch in archs for launch in launches_for(arch)]
    return {"triton": triton.__version__, "rows": rows}


def problems(table: dict) -> list[str]:
    """What must not ship: a launch that does not compile, spills registers, or needs more LDS than its
    arch has. Each message names kernel, tile (variant) and arch."""
    found = []
    for row in table["rows"]:
        where = f"{row['kernel']} [{row['variant']}] on {row['arch']}"
        if "error" in row:
            found.append(f"{where} does not compile: {row['error']}")
            continue
        if row["spills"]:
            found.append(f"{where} spills {row['spills']} registers")
        if row["lds_bytes"] > LDS_BYTES[row["arch"]]:
            found.append(
                f"{where} needs {row['lds_bytes']} bytes of LDS; {row['arch']} has {LDS_BYTES[row['arch']]}"
            )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help=f"write {TABLE.name}")
    parser.add_argument("--check", action="store_true", help=f"fail if {TABLE.name} is out of date")
    args = parser.parse_args(argv)
    table = build_table()
    for row in table["rows"]:
        use = row.get("error") or (
            f"LDS {row['lds_bytes']:>6}  VGPR {row['vgprs']:>3}  AGPR {row['agprs']:>3}  "
            f"spills {row['spills']}  waves/SIMD {row['waves_per_simd']}  {' '.join(row['mfma'])}"
        )
        print(f"{row['arch']}  {row['kernel']:<26} {use}\n    {row['variant']}")
    found = problems(table)
    for message in found:
        print(f"FAIL: {message}", file=sys.stderr)
    if args.write:
        TABLE.write_text(json.dumps(table, indent=1) + "\n")
    if args.check:
        committed = json.loads(TABLE.read_text()) if TABLE.exists() else None
        if committed != json.loads(json.dumps(table)):
            print(
                f"{TABLE} is out of date (committed for triton {committed and committed['triton']}, this is "
                f"triton {triton.__version__}): run `python -m atom.backends.amd_compile --write`",
                file=sys.stderr,
            )
            return 1
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
