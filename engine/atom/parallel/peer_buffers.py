"""Buffers every rank of one node can read and write in every other rank's GPU memory (NVLink / Infinity
Fabric), for the one-shot all-reduce in backends/triton_allreduce.py.

Each rank allocates one buffer with the runtime's own allocator (cudaMalloc / hipMalloc: an IPC handle
then names exactly this buffer, no allocator block around it): flags ([MAX_ROWS, world] int32, zeroed),
then two data halves. The ranks swap IPC handles over the group and each opens its peers' in its own
device's context with peer access enabled as needed; the kernel gets a table of every rank's data and
flag addresses. Not torch's symmetric memory: its rendezvous hung for a second group in one process on
our H200s (torch 2.11), and the engine makes a group per LLM. Not torch.multiprocessing's CUDA sharing:
it opens a peer's handle in the peer device's context, which this rank's kernels cannot read through.
"""

from __future__ import annotations

import ctypes

import torch
import torch.distributed as dist

MAX_ROWS = 256  # the flags' capacity: the most rows one call could carry
# The most rows a call does carry: across NVLink (2 x H200) one shot took 6.7 us at 8 rows against NCCL's
# 13.0, but 15.2 against 14.0 at 64 (docs/performance.md); larger steps go through NCCL
ONE_SHOT_ROWS = 8
HALF_BYTES = 8 << 20  # per call: 256 rows of 7168 fp32 values (DeepSeek-V3's hidden size) fit
DTYPES = (torch.bfloat16, torch.float16, torch.float32)
IPC_HANDLE_BYTES = 64  # cudaIpcMemHandle_t / hipIpcMemHandle_t
LAZY_ENABLE_PEER_ACCESS = 1  # cudaIpcMemLazyEnablePeerAccess / hipIpcMemLazyEnablePeerAccess


class IpcHandle(ctypes.Structure):
    _fields_ = [("reserved", ctypes.c_byte * IPC_HANDLE_BYTES)]


class Runtime:
    """The few CUDA / HIP runtime calls this needs, through the library torch has loaded."""

    def __init__(self) -> None:
        self.prefix = "hip" if torch.version.hip else "cuda"
        self.lib = ctypes.CDLL(_loaded_library("libamdhip64" if torch.version.hip else "libcudart"))

    def call(self, name: str, *args) -> None:
        fn = getattr(self.lib, self.prefix + name)
        code = fn(*args)
        if code != 0:
            describe = getattr(self.lib, self.prefix + "GetErrorString")
            describe.restype = ctypes.c_char_p
            raise RuntimeError(f"{self.prefix}{name} failed: {describe(code).decode()} ({code})")

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self.call("Malloc", ctypes.byref(ptr), ctypes.c_size_t(nbytes))
        self.call("Memset", ptr, 0, ctypes.c_size_t(nbytes))
        return ptr.value

    def handle_of(self, ptr: int) -> bytes:
        handle = IpcHandle()
        self.call("IpcGetMemHandle", ctypes.byref(handle), ctypes.c_void_p(ptr))
        return bytes(handle.reserved)

    def open(self, handle: bytes) -> int:
        ptr, raw = ctypes.c_void_p(), IpcHandle()
        ctypes.memmove(raw.reserved, handle, IPC_HANDLE_BYTES)
        self.call("IpcOpenMemHandle", ctypes.byref(ptr), raw, ctypes.c_uint(LAZY_ENABLE_PEER_ACCESS))
        return ptr.value

    def close(self, ptr: int) -> None:
        self.call("IpcCloseMemHandle", ctypes.c_void_p(ptr))

    def free(self, ptr: int) -> None:
        self.call("Free", ctypes.c_void_p(ptr))


def _loaded_library(stem: str) -> str:
    """The path of the runtime library this process has loaded (torch's own), else the plain name."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.split()[-1]
            if f"/{stem}.so" in path:
                return path
    return f"{stem}.so"


class PeerBuffers:
    def __init__(self, device: torch.device) -> None:
        self.world, self.rank = dist.get_world_size(), dist.get_rank()
        self.half_bytes = HALF_BYTES
        self.max_rows = ONE_SHOT_ROWS
        self.flag_bytes = -(-(MAX_ROWS * self.world * 4) // 256) * 256  # the data start aligned
        self.runtime = Runtime()
        with torch.cuda.device(device):
            self.local = self.runtime.malloc(self.flag_bytes + 2 * HALF_BYTES)  # zeroed
            handles: list = [None] * self.world
            dist.all_gather_object(handles, self.runtime.handle_of(self.local))
            self.opened = [self.runtime.open(h) for r, h in enumerate(handles) if r != self.rank]
        bases = self.opened[: self.rank] + [self.local] + self.opened[self.rank :]
        self.flag_ptrs = torch.tensor(bases, dtype=torch.int64, device=device)
        self.data_ptrs = torch.tensor([b + self.flag_bytes for b in bases], dtype=torch.int64, device=device)
        self.epoch = torch.zeros(2, dtype=torch.int32, device=device)  # the half in use, programs done
        # every rank's flags must be zero before any rank raises one: the caller's next collective (the
        # ranks agreeing to use these buffers) comes after the (synchronous) memset on every rank

    def takes(self, x: torch.Tensor) -> bool:
        """Whether x ([rows, dim], this node's GPUs) fits the one-shot path."""
        return (
            x.dim() == 2
            and 0 < x.shape[0] <= self.max_rows
            and x.dtype in DTYPES
            and x.stride(-1) == 1
            and x.numel() * x.element_size() <= self.half_bytes
        )

    def close(self) -> None:
        """Unmap the peers' buffers and free ours, once the last kernel that reads them is done (a step
        stuck on a dead peer never is: the step watch ends the process first)."""
        torch.cuda.synchronize()
        try:
            for ptr in self.opened:
                self.runtime.close(ptr)
            self.runtime.free(self.local)
        except RuntimeError as e:  # the process is leaving this group; say so, do not fail the close
            print(f"atom: releasing the all-reduce buffers: {e}", flush=True)
        self.opened, self.local = [], 0
