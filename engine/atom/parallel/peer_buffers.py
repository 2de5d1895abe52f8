"""Buffers every rank of one node can read and write in every other rank's GPU memory (NVLink / Infinity
Fabric), for the one-shot all-reduce in backends/triton_allreduce.py.

Each rank allocates one buffer: flags ([MAX_ROWS, world] int32, zeroed) then two data halves. It shares
it through CUDA IPC (HIP IPC on ROCm) as torch.multiprocessing does (reduce_tensor), gathers its peers'
handles over the group and opens them: the kernel then gets a table of every rank's data and flag
addresses. CUDA IPC rather than torch's symmetric memory: a second group in one process hung in the
latter's rendezvous on our H200s (torch 2.11), and the engine makes a group per LLM.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.multiprocessing.reductions import reduce_tensor

MAX_ROWS = 256  # a decode batch; longer steps (prefill) go through NCCL
HALF_BYTES = 8 << 20  # per call: 256 rows of 7168 fp32 values (DeepSeek-V3's hidden size) fit
DTYPES = (torch.bfloat16, torch.float16, torch.float32)


class PeerBuffers:
    def __init__(self, device: torch.device) -> None:
        self.world, self.rank = dist.get_world_size(), dist.get_rank()
        self.half_bytes = HALF_BYTES
        flag_bytes = MAX_ROWS * self.world * 4
        self.flag_bytes = -(-flag_bytes // 256) * 256  # the data start aligned
        self.local = torch.zeros(self.flag_bytes + 2 * HALF_BYTES, dtype=torch.uint8, device=device)
        handles: list = [None] * self.world
        dist.all_gather_object(handles, reduce_tensor(self.local))
        self.mapped = [
            self.local if r == self.rank else rebuild(*args) for r, (rebuild, args) in enumerate(handles)
        ]
        bases = [t.data_ptr() for t in self.mapped]
        self.flag_ptrs = torch.tensor(bases, dtype=torch.int64, device=device)
        self.data_ptrs = torch.tensor([b + self.flag_bytes for b in bases], dtype=torch.int64, device=device)
        self.epoch = torch.zeros(2, dtype=torch.int32, device=device)  # the half in use, programs done
        # every rank's flags must be zero before any rank raises one: the caller's next collective (the
        # ranks agreeing to use these buffers) comes after this zeroing on every rank's stream

    def takes(self, x: torch.Tensor) -> bool:
        """Whether x ([rows, dim], this node's GPUs) fits the one-shot path."""
        return (
            x.dim() == 2
            and 0 < x.shape[0] <= MAX_ROWS
            and x.dtype in DTYPES
            and x.stride(-1) == 1
            and x.numel() * x.element_size() <= self.half_bytes
        )

    def close(self) -> None:
        self.mapped = []
