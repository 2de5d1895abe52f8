"""Option types the `atom` commands share, and the engine config they build."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ModelOpt = Annotated[Path, typer.Option("--model", help="HF-format model folder.")]
MoeBackendOpt = Annotated[
    str | None,
    typer.Option(
        metavar="NAME",
        help="MoE kernels: aiter, triton_kernels, triton or torch (default: best that fits); triton_a8w4 "
        "(MXFP8 activations, opt-in: changes the math).",
    ),
]
AttentionBackendOpt = Annotated[
    str | None,
    typer.Option(metavar="NAME", help="Attention kernels: aiter, triton or torch (default: best that fits)."),
]
LoadFormatOpt = Annotated[
    str, typer.Option(metavar="FORMAT", help="auto (the checkpoint) or dummy (random weights).")
]


TensorParallelOpt = Annotated[
    int, typer.Option("--tensor-parallel-size", "-tp", min=1, help="GPUs (ranks) one model is split over.")
]
NnodesOpt = Annotated[int, typer.Option(min=1, help="Machines the ranks span (ranks split evenly).")]
NodeRankOpt = Annotated[
    int, typer.Option(min=0, help="This machine's index; 0 serves, the others run workers only.")
]
MasterAddrOpt = Annotated[str, typer.Option(help="Node 0's address, as the other nodes reach it.")]
MasterPortOpt = Annotated[
    int | None,
    typer.Option(help="Node 0's rendezvous port (the next one carries the steps); one node: any free."),
]
TimeoutOpt = Annotated[
    float, typer.Option("--distributed-timeout", min=1, help="Seconds a collective may take; then fail.")
]


def parallel_config(
    tensor_parallel_size: int = 1,
    nnodes: int = 1,
    node_rank: int = 0,
    master_addr: str = "127.0.0.1",
    master_port: int | None = None,
    timeout_s: float = 300.0,
):
    from .config import ParallelConfig

    try:
        return ParallelConfig(
            tp_size=tensor_parallel_size,
            rank=node_rank * (tensor_parallel_size // max(nnodes, 1)),
            nnodes=nnodes,
            node_rank=node_rank,
            master_addr=master_addr,
            master_port=master_port,
            timeout_s=timeout_s,
        )
    except ValueError as e:
        raise typer.BadParameter(str(e)) from e


def engine_config(model: Path, **kw):
    from .config import EngineConfig

    return EngineConfig(model=str(model), **{k: v for k, v in kw.items() if v is not None})
