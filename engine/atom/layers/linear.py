"""Linear layers, the embedding and the LM head, each knowing how it shards under tensor parallelism
(tp_size 1: the plain layer, no collective)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backends import fp8
from ..config import ParallelConfig
from ..parallel import comm
from ..parallel.shard import Shard, split, vocab_rows


class Linear(nn.Module):
    """y = x W^T + b over this rank's shard of W (checkpoint layout [out, in]).

    shard None: replicated. Shard on dim 0 (column-parallel): each rank computes its slice of y.
    Shard on dim 1 (row-parallel, reduce=True): each rank computes a partial y over its slice of x, one
    all-reduce sums them; the bias is loaded on rank 0 only (zeros elsewhere) so it is added once.

    quantizable False: the weight is read as a matrix elsewhere (fused q/k/v, MLA's absorbed up-projection)
    or is a router, so it never stays FP8 (keep_fp8)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool,
        shard: Shard | None = None,
        parallel: ParallelConfig | None = None,
        quantizable: bool = True,
    ) -> None:
        super().__init__()
        self.quantizable = quantizable
        self.fp8 = None  # the FP8 linear backend, once keep_fp8 made the weight FP8
        self.shard = shard
        self.parallel = parallel or ParallelConfig()
        self.row_parallel = shard is not None and shard.dim == 1 and self.parallel.tp_size > 1
        self.reduce = self.row_parallel  # its partial outputs summed here (unless defer_reduce)
        out_local = shard.size if shard is not None and shard.dim == 0 else out_features
        in_local = shard.size if shard is not None and shard.dim == 1 else in_features
        self.weight = sharded_parameter((out_local, in_local), (out_features, in_features), self._load_weight)
        self.bias = sharded_parameter((out_local,), (out_features,), self._load_bias) if bias else None

    @classmethod
    def column(cls, in_features: int, out_features: int, bias: bool, parallel: ParallelConfig, unit: int = 1,
               what: str = "output size") -> Linear:  # fmt: skip
        """Output rows split over the ranks (on multiples of `unit`)."""
        start, size = split(out_features, parallel.tp_size, parallel.rank, unit, what)
        return cls(in_features, out_features, bias, Shard(0, start, size), parallel)

    @classmethod
    def row(cls, in_features: int, out_features: int, bias: bool, parallel: ParallelConfig, unit: int = 1,
            what: str = "input size") -> Linear:  # fmt: skip
        """Input columns split over the ranks; one all-reduce sums the partial outputs."""
        start, size = split(in_features, parallel.tp_size, parallel.rank, unit, what)
        return cls(in_features, out_features, bias, Shard(1, start, size), parallel)

    def _load_weight(self, param: nn.Parameter, full: torch.Tensor) -> None:
        _copy(param, self.shard.take(full) if self.shard is not None else full)

    def defer_reduce(self) -> bool:
        """Return this rank's partial output unsummed: the norm after it sums over the ranks in its own
        launch (RMSNorm.reduces_input). True where there was a sum to leave."""
        had, self.reduce = self.reduce, False
        return had

    def _load_bias(self, param: nn.Parameter, full: torch.Tensor) -> None:
        if self.shard is not None and self.shard.dim == 0:
            full = self.shard.take(full)
        elif self.row_parallel and self.parallel.rank != 0:
            full = torch.zeros_like(full)
        _copy(param, full)

    def keep_fp8(self, backend, block: tuple[int, int], fnuz: bool) -> bool:
        """Hold the weight as an FP8 checkpoint stores it (e4m3 values, `weight_scale_inv` one fp32 scale
        per block) and multiply with backend.fp8_block_linear. fnuz: gfx942's e4m3 variant, converted
        as it loads (backends/fp8.py). Under tensor parallelism this rank's slice must fall on block
        edges (its scales are then a slice too); False, and nothing changed, where it does not."""
        out, inp = self.weight.shape
        full_out, full_in = self.weight.full_shape
        self.fp8_scale_shard = None
        if self.shard is not None:
            unit, full = block[self.shard.dim], (full_out, full_in)[self.shard.dim]
            end = self.shard.start + self.shard.size
            if self.shard.start % unit or (self.shard.size % unit and end != full):
                return False
            self.fp8_scale_shard = Shard(
                self.shard.dim, self.shard.start // unit, -(-self.shard.size // unit)
            )
        scales = (-(-out // block[0]), -(-inp // block[1]))
        full_scales = (-(-full_out // block[0]), -(-full_in // block[1]))
        with torch.device(self.weight.device):
            dtype = fp8.stored_dtype(fnuz)
            self.weight = sharded_parameter((out, inp), (full_out, full_in), self._load_fp8_weight, dtype)
            self.weight_scale_inv = sharded_parameter(
                scales, full_scales, self._load_fp8_scale, torch.float32
            )
        self.fp8, self.fnuz, self.fp8_block = backend, fnuz, block
        return True

    def _load_fp8_weight(self, param: nn.Parameter, full: torch.Tensor) -> None:
        mine = self.shard.take(full) if self.shard is not None else full
        _copy(param, fp8.values_as_stored(mine, self.fnuz))

    def _load_fp8_scale(self, param: nn.Parameter, full: torch.Tensor) -> None:
        mine = self.fp8_scale_shard.take(full) if self.fp8_scale_shard is not None else full
        _copy(param, fp8.scales_as_stored(mine, self.fnuz))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fp8 is not None:
            y = self.fp8.fp8_block_linear(x, self.weight, self.weight_scale_inv, self.bias, self.fp8_block)
        else:
            y = dense(x, self.weight, self.bias)
        return comm.all_reduce(y) if self.reduce else y


def dense(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear; on a GPU a batch-1 decode step's row goes through one GEMV launch instead (the same math;
    cuBLAS runs it as a split-K GEMM and a reduce)."""
    if x.is_cuda:  # imported here because CPU images ship without Triton
        from ..backends import triton_gemv

        if triton_gemv.takes(x, weight):
            return triton_gemv.gemv(x, weight, bias)
    return F.linear(x, weight, bias)


def sharded_parameter(
    shape: tuple, full_shape: tuple, loader, dtype: torch.dtype | None = None
) -> nn.Parameter:
    """A parameter holding this rank's part of a checkpoint tensor of `full_shape`; `loader(param, full)`
    copies its part in (random dummy weights go through it too, so they are the same model at any
    tp_size)."""
    param = nn.Parameter(torch.empty(shape, dtype=dtype), requires_grad=False)
    param.full_shape = full_shape  # type: ignore[attr-defined]
    param.weight_loader = loader  # type: ignore[attr-defined]
    return param


def _copy(param: nn.Parameter, loaded: torch.Tensor) -> None:
    if param.shape != loaded.shape:
        raise ValueError(f"shape {tuple(loaded.shape)} does not match the layer's {tuple(param.shape)}")
    param.data.copy_(loaded)


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim), requires_grad=False)
        # tensor parallelism: x arrives as this rank's partial sum (the row-parallel layer before it
        # deferred its all-reduce); the sum, the residual add and the norm then share one launch
        self.reduces_input = False

    def forward(
        self, x: torch.Tensor, residual: torch.Tensor | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """norm(x); with a residual, (norm(x + residual), x + residual): the add rides in the norm's launch."""
        if self.reduces_input:
            if residual is not None:
                fused = comm.all_reduce_add_rms_norm(x, residual, self.weight, self.eps)
                if fused is not None:
                    return fused
            x = comm.all_reduce(x)
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


class VocabRows(nn.Module):
    """A [vocab, dim] table split by rows over the ranks (the vocabulary padded to a multiple of
    tp_size; padding rows are zeros). Base of the embedding and the LM head, which may share it."""

    def __init__(self, vocab: int, dim: int, parallel: ParallelConfig) -> None:
        super().__init__()
        self.vocab, self.parallel = vocab, parallel
        self.first, self.rows = vocab_rows(vocab, parallel)
        self.weight = sharded_parameter((self.rows, dim), (vocab, dim), self._load)

    def _load(self, param: nn.Parameter, full: torch.Tensor) -> None:
        if full.shape[0] != self.vocab:
            raise ValueError(f"{full.shape[0]} rows where the config says vocab_size {self.vocab}")
        mine = full[self.first : self.first + self.rows]
        param.data.zero_()
        param.data[: mine.shape[0]].copy_(mine)


class Embedding(VocabRows):
    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if self.parallel.tp_size == 1:
            return F.embedding(ids, self.weight)
        local = ids - self.first
        outside = (local < 0) | (local >= self.rows)
        x = F.embedding(local.masked_fill(outside, 0), self.weight).masked_fill(outside[:, None], 0)
        return comm.all_reduce(x)


class LMHead(VocabRows):
    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits [rows, vocab] on every rank (gathered from the ranks' slices)."""
        logits = F.linear(hidden, self.weight)
        if self.parallel.tp_size == 1:
            return logits
        return comm.gather_columns(logits, self.parallel.tp_size)[:, : self.vocab]
