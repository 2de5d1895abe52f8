"""The AMD compile tier: every Triton kernel the engine launches, at real model shapes and every tile of
the gfx942 / gfx950 tables, compiled for those archs by Triton's HIP backend on this CPU machine. Fails
on a kernel that does not compile, spills registers or exceeds its arch's LDS, and when the committed
table (engine/atom/backends/amd_kernels.json) no longer matches what compiles. Nothing here runs on an
AMD GPU (there is none): it proves the code objects build and what they use, not their speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from atom.backends.amd_compile import TABLE

pytestmark = pytest.mark.slow


def compile_tier(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    """In a process of its own: the JIT functions must be real (the tests' TRITON_INTERPRET replaces them)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "atom.backends.amd_compile", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


def test_every_kernel_compiles_for_gfx942_and_gfx950_without_spills_and_the_table_is_current():
    done = compile_tier("--check")
    assert done.returncode == 0, done.stderr[-5000:]
    table = json.loads(TABLE.read_text())
    kernels = {(row["kernel"], row["arch"]) for row in table["rows"]}
    for name in (
        "_paged_attention_kernel",
        "_gate_up_kernel",
        "_down_kernel",
        "_gate_up_gemv_kernel",
        "_down_gemv_kernel",
        "_group_kernel",
        "_rms_norm_kernel",
        "_rotary_kernel",
    ):
        assert {(name, "gfx942"), (name, "gfx950")} <= kernels, name
    # every tile of each arch's MoE table was compiled for that arch
    from atom.backends.triton_moe_tiles import TILES

    for arch in ("gfx942", "gfx950"):
        variants = {
            row["variant"] for row in table["rows"] if row["arch"] == arch and "gemv" not in row["kernel"]
        }
        for _, tile in TILES[arch]:
            if tile.block_m > 1:
                assert any(
                    f"BLOCK_M={tile.block_m} BLOCK_N={tile.block_n} BLOCK_K={tile.block_k}" in v
                    for v in variants
                ), (arch, tile)


def test_a_tile_past_the_arch_is_named_with_kernel_tile_and_arch():
    """A MoE tile far too large for gfx942 goes through the same recording and compile as the real ones."""
    code = """
from atom.backends import amd_compile, triton_moe
from atom.backends.triton_moe_tiles import Tile
spec = amd_compile.MODELS["gpt-oss"][2]
with amd_compile.recorded_launches("gfx942") as launches:
    amd_compile.launch_moe(spec, Tile(128, 256, 256, 4, 3))
rows = [amd_compile.compile_launch(l, "gfx942") for l in launches if l.kernel == "_gate_up_kernel"]
print("\\n".join(amd_compile.problems({"rows": rows})))
"""
    done = compile_tier(code=code)
    assert done.returncode == 0, done.stderr[-3000:]
    message = done.stdout.strip()
    assert "_gate_up_kernel [" in message and "BLOCK_M=128 BLOCK_N=256 BLOCK_K=256" in message
    assert "on gfx942" in message and ("spills" in message or "LDS" in message)


def test_the_a8w4_moe_runs_on_gfx950s_scaled_mfma():
    """The opt-in A8W4 variant's 32- and 64-row tiles compile to CDNA4's native MXFP4 instruction (the
    16-row tile upcasts to a bf16 MFMA: the scaled one needs 32 rows); the plain path never does."""
    rows = json.loads(TABLE.read_text())["rows"]
    a8w4 = [r for r in rows if r["arch"] == "gfx950" and "WEIGHTS=3" in r["variant"]]
    assert {r["kernel"] for r in a8w4} == {"_gate_up_kernel", "_down_kernel"}
    for row in a8w4:
        scaled = [m for m in row["mfma"] if m.startswith("v_mfma_scale_f32_") and m.endswith("_f8f6f4")]
        assert bool(scaled) == ("BLOCK_M=16 " not in row["variant"]), row
    plain = [r for r in rows if "WEIGHTS=1" in r["variant"]]
    assert plain and not any(m.startswith("v_mfma_scale") for r in plain for m in r["mfma"])
    assert not any("WEIGHTS=3" in r["variant"] for r in rows if r["arch"] == "gfx942")


def test_every_rocm_recipe_arch_has_its_kernels_compiled():
    """An image built for gfx942;gfx950 ships Triton kernels that compile for both: the recipes' archs and
    the compiled table agree (a new arch in a recipe fails here until the tier covers it)."""
    from atom_build.recipe import available_recipes, load_recipe

    compiled = {row["arch"] for row in json.loads(TABLE.read_text())["rows"]}
    recipes = [load_recipe(name) for name in available_recipes()]
    rocm = [r for r in recipes if r.flavour == "rocm"]
    assert rocm, "no ROCm recipe"
    for recipe in rocm:
        missing = set(recipe.archs) - compiled
        assert not missing, (
            f"recipe {recipe.name} builds for {sorted(missing)}, which the compile tier does not cover"
        )


def test_launches_are_compiled_with_what_the_jit_specializes_on():
    """The tier compiles each launch with the attributes the JIT would give it (from its own binder): the
    engine's tensors are 16-byte aligned and under 2 GiB, and a compile without that knowledge is code no
    launch produces (different vector widths, registers and spills)."""
    code = (
        "import json; from atom.backends import amd_compile as ac; "
        "l = next(l for l in ac.launches_for('gfx950') if l.kernel == '_rms_norm_kernel'); "
        "print(json.dumps({'signature': l.signature, 'attrs': l.attrs}))"
    )
    done = compile_tier(code=code)
    assert done.returncode == 0, done.stderr[-3000:]
    launch = json.loads(done.stdout.strip().splitlines()[-1])
    attrs = {index: {name: value for name, value in found} for index, found in launch["attrs"]}
    pointers = [i for i, (_, kind) in enumerate(launch["signature"]) if kind.startswith("*")]
    assert pointers
    for i in pointers:
        assert attrs[i] == {"tt.divisibility": 16, "tt.pointer_range": 32}, (
            launch["signature"][i],
            attrs.get(i),
        )
