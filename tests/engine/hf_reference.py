"""HF transformers as an independent reference: greedy continuation by full recompute, and logits."""

from __future__ import annotations

import torch


def load_hf(folder, mxfp4: bool = False):
    from transformers import AutoModelForCausalLM, Mxfp4Config

    kwargs = {"quantization_config": Mxfp4Config(dequantize=True)} if mxfp4 else {}
    model = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="eager", **kwargs
    )
    return model.eval()


@torch.inference_mode()
def greedy(model, prompt_ids: list[int], n: int) -> tuple[list[int], torch.Tensor]:
    """n greedy tokens and the logits [n, vocab] that chose them."""
    ids = torch.tensor([prompt_ids])
    tokens, logits = [], []
    for _ in range(n):
        last = model(ids).logits[0, -1].float()
        logits.append(last)
        tokens.append(int(last.argmax()))
        ids = torch.cat([ids, torch.tensor([[tokens[-1]]])], dim=1)
    return tokens, torch.stack(logits)


@torch.inference_mode()
def prompt_logits(model, ids: list[int]) -> torch.Tensor:
    return model(torch.tensor([ids])).logits[0].float()


def assert_greedy_matches_hf(
    folder, prompts: list[list[int]], n: int, reference=None, mxfp4: bool = False, **llm_kwargs
) -> None:
    """The engine on `folder` gives HF's greedy tokens for every prompt (batched together) and logprobs
    within 1e-3: fp32 on both sides, identical weights, only summation order differs. `reference`: the
    folder HF loads, when it is another (e.g. the weights an FP8 checkpoint dequantizes to)."""
    from atom import LLM, SamplingParams

    hf = load_hf(reference or folder, mxfp4=mxfp4)
    params = SamplingParams(max_tokens=n, temperature=0, ignore_eos=True, logprobs=0)
    with LLM(str(folder), **llm_kwargs) as llm:
        outs = llm.generate(prompts, params)
    for prompt, out in zip(prompts, outs, strict=True):
        expected, ref_logits = greedy(hf, prompt, n)
        assert out.output_token_ids == expected
        ours = torch.tensor([lp["logprob"] for lp in out.logprobs])
        theirs = ref_logits.log_softmax(-1)[torch.arange(n), torch.tensor(expected)]
        assert torch.allclose(ours, theirs, atol=1e-3), (ours - theirs).abs().max()
