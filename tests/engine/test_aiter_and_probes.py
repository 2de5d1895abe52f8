"""What can be checked of the ROCm paths without an AMD GPU: aiter's arguments, the probes' answers and
reasons, and the startup check that the GPU is one the image was built for."""

from __future__ import annotations

import sys
import textwrap

import pytest
import torch

from atom.backends import aiter_moe
from atom.backends.routing import SOFTMAX_TOPK_RENORM, route
from atom.backends.spec import MoESpec
from atom.platform import Platform
from atom.platform.device import check_build_arch
from atom.platform.probes import probe_aiter, probe_triton_kernels

MIXTRAL = MoESpec(6, 2, 64, 96, "bf16", "silu", SOFTMAX_TOPK_RENORM)


def test_aiter_moe_arguments_follow_its_signature():
    x, logits = torch.randn(5, 64), torch.randn(5, 6)
    w = {"w13": torch.randn(6, 192, 64), "w2": torch.randn(6, 64, 96)}
    args = aiter_moe.fused_moe_args(x, logits, w, MIXTRAL)
    weights, ids = route(logits, 2, SOFTMAX_TOPK_RENORM)
    assert args["topk_ids"].dtype == torch.int32 and args["topk_ids"].is_contiguous()
    assert args["topk_weight"].dtype == torch.float32
    assert torch.equal(args["topk_ids"].long(), ids) and torch.allclose(args["topk_weight"], weights)
    assert torch.allclose(args["topk_weight"].sum(-1), torch.ones(5))  # renormalised, as Mixtral routes
    assert args["w1"].shape == (6, 192, 64) and args["w2"].shape == (
        6,
        64,
        96,
    )  # [E, 2I, H] gate|up, [E, H, I]
    assert (args["activation"], args["quant_type"]) == ("Silu", "No")
    assert "w1_scale" not in args


def test_aiter_moe_fp8_block_passes_scales():
    spec = MoESpec(6, 2, 128, 128, "fp8_block", "silu", SOFTMAX_TOPK_RENORM)
    w = {"w13": torch.zeros(6, 256, 128), "w2": torch.zeros(6, 128, 128)}
    w |= {"w13_scale": torch.ones(6, 2, 1), "w2_scale": torch.ones(6, 1, 1)}
    args = aiter_moe.fused_moe_args(torch.randn(3, 128), torch.randn(3, 6), w, spec)
    assert args["quant_type"] == "per_128x128" and args["w1_scale"] is w["w13_scale"]


def write_package(root, name: str, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / name / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


@pytest.fixture
def on_path(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    for mod in [m for m in sys.modules if m.split(".")[0] in ("aiter", "triton_kernels")]:
        del sys.modules[mod]


def test_unrelated_pypi_triton_kernels_is_not_taken_for_the_real_one(on_path):
    # PyPI's triton_kernels 0.1.0 installs the same import name without matmul_ogs
    write_package(on_path, "triton_kernels", {"__init__.py": "VERSION = '0.1.0'\n"})
    result = probe_triton_kernels("cuda")
    assert result.features["triton_kernels"] is False
    assert "no matmul_ogs/matmul API" in result.reasons["triton_kernels"]


def test_aiter_ck_not_yet_jit_built_counts_as_available(on_path, tmp_path_factory):
    jit_dir, ck_dir = tmp_path_factory.mktemp("jit"), tmp_path_factory.mktemp("ck")
    core = f"CK_DIR = {str(ck_dir)!r}\ndef get_user_jit_dir():\n    return {str(jit_dir)!r}\n"
    write_package(on_path, "aiter", {"__init__.py": "", "jit/__init__.py": "", "jit/core.py": core})
    result = probe_aiter("cuda")
    assert result.features["aiter_ck"] is True  # no .so yet, but buildable: not "no CK"
    assert "JIT-buildable" in result.reasons["aiter_ck"]
    (jit_dir / "module_moe_ck2stages.so").write_bytes(b"")
    assert "prebuilt" in probe_aiter("cuda").reasons["aiter_ck"]


def test_aiter_without_ck_sources_says_so(on_path, tmp_path_factory, monkeypatch):
    monkeypatch.delenv("CK_DIR", raising=False)
    jit_dir = tmp_path_factory.mktemp("jit")
    core = f"CK_DIR = '/nonexistent'\ndef get_user_jit_dir():\n    return {str(jit_dir)!r}\n"
    write_package(on_path, "aiter", {"__init__.py": "", "jit/__init__.py": "", "jit/core.py": core})
    result = probe_aiter("cuda")
    assert result.features == {"aiter": True, "aiter_ck": False}
    assert "ENABLE_CK=0" in result.reasons["aiter_ck"]


def test_gpu_the_image_was_not_built_for_is_a_startup_error():
    build = {"recipe": "rocm-gfx950", "archs": ["gfx950"]}
    with pytest.raises(RuntimeError, match=r"built for \['gfx950'\].*GPU is gfx942.*--arch gfx942"):
        check_build_arch(Platform("amd", "gfx942", "cuda", build=build))
    check_build_arch(Platform("amd", "gfx950", "cuda", build=build))  # the right GPU starts
    check_build_arch(Platform("cpu", "cpu", "cpu", build=build))  # the CPU path never needs a GPU arch
