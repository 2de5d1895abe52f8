"""Our MoE's sm90 tiles compiled for Hopper on this CPU machine (bench/sm90_compile.py: each launch as the
JIT would make it, Triton's CUDA backend and its bundled ptxas). CI's Triton is not the GPU machine's, so
this guards properties of the code, not its speed there: the weights-first kernels copy their operands
into shared memory 16 bytes at a time (their MXFP4 words went 4 bytes at a time, with bank conflicts,
until the loads were written in whole 32-value blocks), and no table tile spills."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_the_sm90_tiles_copy_16_bytes_at_a_time_and_do_not_spill():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # the JIT functions must be real
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "sm90_compile.py")], capture_output=True, text=True, env=env,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if " regs " in line]
    weights_first = [line for line in rows if line.startswith(("gate_up_kernel", "down_kernel"))]
    assert len(weights_first) >= 4, done.stdout
    for line in weights_first:
        assert re.search(r"cp\.async 16 B", line), line
    for line in rows:
        assert re.search(r"spill +0 B", line), line
