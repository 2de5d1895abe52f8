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
