"""Selection policy: (arch x CK present x triton_kernels present x layer) -> backend, or a clear error.

Includes the failures seen in the wild: a CK-missing fallback that dropped the arch check, a Triton MoE taken
for routing or activation it does not implement, an attention backend handed a cache layout it misreads.
"""

from __future__ import annotations

import pytest

from atom.backends import registry
from atom.backends.routing import SIGMOID_GROUPED, SOFTMAX_TOPK_RENORM, TOPK_SOFTMAX
from atom.backends.spec import AttentionSpec, LinearSpec, MoESpec
from atom.errors import BackendError
from atom.platform import simulated

GPT_OSS_MOE = MoESpec(32, 4, 2880, 2880, "mxfp4", "swiglu_oai", TOPK_SOFTMAX, has_bias=True)
MIXTRAL_MOE = MoESpec(8, 2, 4096, 14336, "bf16", "silu", SOFTMAX_TOPK_RENORM)
# as DeepseekV3 builds it: shared experts are a dense MLP beside the fused layer, routing groups (8, 4)
DEEPSEEK_MOE = MoESpec(256, 8, 7168, 2048, "bf16", "silu", SIGMOID_GROUPED, groups=(8, 4), routed_scaling=2.5)
SHARED_IN_KERNEL_MOE = MoESpec(256, 8, 7168, 2048, "bf16", "silu", SIGMOID_GROUPED, shared_experts=1)
FP8_BLOCK_MOE = MoESpec(128, 8, 4096, 1536, "fp8_block", "silu", SOFTMAX_TOPK_RENORM)
SWIGLU_AS_SILU_MOE = MoESpec(32, 4, 2880, 2880, "mxfp4", "silu", TOPK_SOFTMAX, has_bias=True)

GPT_OSS_ATTN = AttentionSpec(64, 8, 64, sliding_window=128, sinks=True)
LLAMA_ATTN = AttentionSpec(32, 8, 128)

# (arch, ck, triton_kernels, layer) -> expected backend, or ("error", words the message must contain)
MOE_MATRIX = [
    ("cpu", False, False, GPT_OSS_MOE, "torch"),
    ("cpu", False, False, MIXTRAL_MOE, "torch"),
    ("cpu", False, False, DEEPSEEK_MOE, "torch"),
    ("cpu", False, False, SHARED_IN_KERNEL_MOE, ("error", "no shared experts")),
    ("sm90", False, False, GPT_OSS_MOE, "triton"),
    ("sm90", False, True, GPT_OSS_MOE, "triton_kernels"),
    ("sm90", False, True, MIXTRAL_MOE, "triton"),
    ("sm90", False, False, DEEPSEEK_MOE, "triton"),  # routing in torch before our kernels
    ("sm90", False, True, FP8_BLOCK_MOE, "triton"),  # triton_kernels has no FP8 block experts
    ("gfx950", True, False, GPT_OSS_MOE, "triton"),  # aiter's CK MoE has no mxfp4 swiglu_oai with biases
    ("gfx950", True, False, MIXTRAL_MOE, "aiter"),
    ("gfx950", True, False, DEEPSEEK_MOE, "triton"),  # aiter's CK MoE: no grouped sigmoid routing wired
    ("gfx950", True, False, SHARED_IN_KERNEL_MOE, ("error", "no shared experts")),
    ("gfx950", True, False, FP8_BLOCK_MOE, "aiter"),
    ("gfx942", True, True, MIXTRAL_MOE, "aiter"),
    ("gfx942", False, False, MIXTRAL_MOE, "triton"),
    ("gfx942", False, True, GPT_OSS_MOE, "triton_kernels"),
    # ENABLE_CK=0 image: no silent Triton path for routing/quant it does not implement
    ("gfx942", False, False, DEEPSEEK_MOE, "triton"),
    ("gfx950", False, False, FP8_BLOCK_MOE, "triton"),  # our Triton MoE takes FP8 block experts
    # CK "present" on an arch aiter does not build for: the arch check still applies
    ("gfx1100", True, False, MIXTRAL_MOE, "triton"),
    ("gfx1100", True, False, FP8_BLOCK_MOE, "triton"),  # aiter's arch check still applies
    # activation mismatch is never papered over
    ("gfx950", True, True, SWIGLU_AS_SILU_MOE, "triton"),  # triton_kernels only does swiglu_oai
]

ATTENTION_MATRIX = [
    ("cpu", False, False, GPT_OSS_ATTN, "torch"),
    ("cpu", False, False, LLAMA_ATTN, "torch"),
    ("sm90", False, False, GPT_OSS_ATTN, "triton"),
    ("gfx950", True, False, GPT_OSS_ATTN, "triton"),  # aiter: no sinks, no window, other cache layout
    ("gfx950", True, False, LLAMA_ATTN, "triton"),  # the engine's NHD cache is not aiter's layout
    ("gfx942", False, False, LLAMA_ATTN, "triton"),
]


def run(kind, arch, ck, tk, spec, expected, forced=None):
    platform = simulated(arch, ck=ck, triton_kernels=tk)
    if isinstance(expected, tuple):
        with pytest.raises(BackendError, match=expected[1]):
            registry.select(kind, spec, platform, forced)
        return None
    selection = registry.select(kind, spec, platform, forced)
    assert selection.name == expected, selection.rejected
    return selection


def case_id(case) -> str:
    arch, ck, tk, spec, _ = case
    return f"{arch}-ck{int(ck)}-tk{int(tk)}-{getattr(spec, 'routing', getattr(spec, 'head_dim', ''))}"


@pytest.mark.parametrize("case", MOE_MATRIX, ids=[case_id(c) for c in MOE_MATRIX])
def test_moe_selection(case):
    run("moe", *case)


@pytest.mark.parametrize("case", ATTENTION_MATRIX, ids=[case_id(c) for c in ATTENTION_MATRIX])
def test_attention_selection(case):
    run("attention", *case)


def test_rejections_say_why():
    sel = registry.select("moe", GPT_OSS_MOE, simulated("gfx950", ck=True))
    assert "weight quant mxfp4" in sel.rejected["aiter"]


@pytest.mark.parametrize(
    "forced, spec, arch, ck, words",
    [
        (
            "triton_kernels",
            FP8_BLOCK_MOE,
            "sm90",
            False,
            "--moe-backend triton_kernels cannot run this layer on sm90: needs triton_kernels",
        ),
        (
            "aiter",
            GPT_OSS_MOE,
            "gfx950",
            True,
            "--moe-backend aiter cannot run this layer on gfx950: weight quant",
        ),
        ("aiter", MIXTRAL_MOE, "gfx950", False, "needs aiter_ck"),
        ("triton_kernels", MIXTRAL_MOE, "sm90", False, "needs triton_kernels"),
        ("triton_a8w4", FP8_BLOCK_MOE, "gfx950", False, "weight quant fp8_block"),
        ("cutlass", MIXTRAL_MOE, "sm90", False, "unknown moe backend 'cutlass'"),
    ],
)
def test_forced_backend_fails_clearly(forced, spec, arch, ck, words):
    with pytest.raises(BackendError, match=words.replace("[", r"\[")):
        registry.select("moe", spec, simulated(arch, ck=ck), forced)


def test_forced_backend_that_fits_is_taken_over_preference():
    assert registry.select("moe", GPT_OSS_MOE, simulated("sm90"), "torch").name == "torch"


def test_unimplemented_module_is_never_selected(monkeypatch):
    # a backend whose kernel module is missing loses to the next exact match, and the reason says so
    monkeypatch.setattr(registry, "implemented", lambda kind, name: name != "aiter")
    sel = registry.select("moe", MIXTRAL_MOE, simulated("gfx950", ck=True))
    assert sel.name == "triton" and "not implemented" in sel.rejected["aiter"]


def test_cuda_graph_capture_is_declared_by_backends_free_of_host_syncs():
    # torch's references sync on the host (the MoE reference reads the routed experts); aiter is unexecuted
    declared = {
        (k, n): registry.support_of(k, n).cuda_graphs for k in registry.MODULES for n in registry.MODULES[k]
    }
    assert {key for key, ok in declared.items() if ok} == {
        ("attention", "triton"),
        ("mla", "triton"),
        ("moe", "triton"),
        ("moe", "triton_a8w4"),  # the same kernels (and graphs) with MXFP8 activations
        ("linear", "triton"),
        ("linear", "torch"),  # a plain matmul on weights dequantized at load
        ("moe", "triton_kernels"),
    }


FP8_LINEAR = LinearSpec("fp8_block", "bfloat16")


@pytest.mark.parametrize(
    "spec,arch,chosen,why_not_triton",
    [
        (FP8_LINEAR, "sm90", "triton", None),
        (FP8_LINEAR, "gfx942", "triton", None),
        (LinearSpec("fp8_block", "float32"), "sm90", "triton", None),
        (FP8_LINEAR, "cpu", "torch", None),  # the interpreter is a test tool: torch first on the CPU
    ],
)
def test_fp8_linear_selection(spec, arch, chosen, why_not_triton):
    sel = registry.select("linear", spec, simulated(arch))
    assert sel.name == chosen
    if why_not_triton:
        assert why_not_triton in sel.rejected["triton"]
