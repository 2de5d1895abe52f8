"""Linear layers that know how they shard under tensor parallelism (tp_size 1: plain linear)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ParallelConfig


class Linear(nn.Module):
    """split: None (replicated), 'column' (output rows sharded) or 'row' (input columns sharded)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool,
        parallel: ParallelConfig,
        split: str | None = None,
    ) -> None:
        super().__init__()
        self.parallel, self.split = parallel, split
        tp = parallel.tp_size if split else 1
        out_local = out_features // tp if split == "column" else out_features
        in_local = in_features // tp if split == "row" else in_features
        self.weight = nn.Parameter(torch.empty(out_local, in_local), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out_local), requires_grad=False) if bias else None
        self.weight.weight_loader = self._load  # type: ignore[attr-defined]
        if self.bias is not None:
            self.bias.weight_loader = self._load  # type: ignore[attr-defined]

    def _load(self, param: nn.Parameter, loaded: torch.Tensor) -> None:
        tp, rank = self.parallel.tp_size, self.parallel.rank
        dim = {"column": 0, "row": 1}.get(self.split or "")
        if dim is not None and tp > 1 and not (self.split == "row" and loaded.dim() == 1):
            loaded = loaded.chunk(tp, dim=dim)[rank]
        if param.shape != loaded.shape:
            raise ValueError(f"shape {tuple(loaded.shape)} does not match the layer's {tuple(param.shape)}")
        param.data.copy_(loaded)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias if (self.split != "row" or self.parallel.rank == 0) else None
        y = F.linear(x, self.weight, bias)
        if self.split == "row" and self.parallel.tp_size > 1:
            torch.distributed.all_reduce(y)
        return y


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim), requires_grad=False)

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """norm(x); with a residual, (norm(x + residual), x + residual): the add rides in the norm's launch."""
        if x.is_cuda:  # one fused kernel; imported here because CPU images ship without Triton
            from ..backends import triton_pointwise

            return triton_pointwise.rms_norm(x, self.weight, self.eps, residual)
        return self.reference(x, residual)

    def reference(
        self, x: torch.Tensor, residual: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        if residual is not None:
            total = x + residual
            return self.reference(total), total
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return (self.weight.float() * x).to(dtype)


class Embedding(nn.Module):
    def __init__(self, vocab: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(vocab, dim), requires_grad=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.weight)
