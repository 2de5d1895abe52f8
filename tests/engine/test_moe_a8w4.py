"""The A8W4 MoE variant (MXFP8 activations x MXFP4 experts) in Triton's interpreter: equal to its own
torch statement, within the documented bound of the bf16-activation reference, and never chosen unless
named."""

from __future__ import annotations

import pytest
import torch

from atom.backends import registry, torch_moe, triton_moe_a8w4
from atom.backends.routing import TOPK_SOFTMAX
from atom.backends.spec import MoESpec
from atom.bench.moe import random_mxfp4_experts
from atom.errors import BackendError
from atom.platform import simulated

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # compiled on a GPU machine, interpreted here
SPEC = MoESpec(8, 4, 256, 128, "mxfp4", "swiglu_oai", TOPK_SOFTMAX, has_bias=True)
# docs/backends.md: the bounds of the A8W4 contract (relative Frobenius error of the layer's output)
BOUND_VS_ITS_STATEMENT = 0.05  # 1-2 % typical, 3.8 % seen: a bf16 h at an e4m3 rounding edge flips
BOUND_VS_BF16 = 0.06  # MXFP8 keeps 3 mantissa bits of every activation: 3.5-4.9 % measured


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("tokens", [1, 40])
def test_a8w4_matches_its_torch_statement_and_the_documented_bound(tokens):
    torch.manual_seed(tokens)
    w = random_mxfp4_experts(SPEC, DEVICE, torch.Generator(DEVICE).manual_seed(tokens))
    x = torch.randn(tokens, SPEC.hidden_size, device=DEVICE).to(torch.bfloat16)
    logits = torch.randn(tokens, SPEC.num_experts, device=DEVICE)
    got = triton_moe_a8w4.forward(x, logits, w, SPEC)
    statement = triton_moe_a8w4.reference_forward(x, logits, w, SPEC)
    exact = torch_moe.forward(x, logits, w, SPEC)
    assert relative(got, statement) < BOUND_VS_ITS_STATEMENT
    assert relative(got, exact) < BOUND_VS_BF16
    assert relative(statement, exact) > 0.005  # it is a different math, which is why it is opt-in


def test_mxfp8_roundtrip_is_e4m3_with_power_of_two_scales():
    x = torch.tensor([[0.98046875] + [3.0] + [0.0] * 30])  # 0.98 * 2^7 = 125.5 rounds to 128 (a carry)
    back = triton_moe_a8w4.mxfp8_roundtrip(x)
    assert back[0, 0] == 1.0 and back[0, 1] == 3.0 and (back[0, 2:] == 0).all()


def test_a8w4_is_opt_in_and_refused_where_it_buys_nothing():
    gfx950 = simulated("gfx950")
    assert registry.select("moe", SPEC, gfx950).name != "triton_a8w4"  # never on its own
    assert registry.select("moe", SPEC, gfx950, "triton_a8w4").name == "triton_a8w4"
    with pytest.raises(BackendError, match="arch gfx942 not in"):
        registry.select("moe", SPEC, simulated("gfx942"), "triton_a8w4")
    bf16 = MoESpec(8, 2, 64, 64, "bf16", "silu", TOPK_SOFTMAX)
    with pytest.raises(BackendError, match="weight quant bf16"):
        registry.select("moe", bf16, gfx950, "triton_a8w4")
