"""Our Triton MoE's sm90 (Hopper) tiles compiled on any machine, no GPU: each launch as the JIT would make
it (amd_compile's recorder, here with Triton's CUDA backend), then the bundled ptxas for registers, spills
and whether it serializes the wgmmas, and the SASS for the instructions of the main loop. This is how the
MXFP4 words' 4-byte copies and the 2x instruction count against triton_kernels were found
(docs/performance.md). Triton versions compile differently: for numbers that hold on the GPU use its
version (a venv with `pip install triton==3.6.0` for the H200 machines).

Usage: python bench/sm90_compile.py [--shape gpt-oss-20b] [--tile block_m,block_n,block_k,warps,stages]...
(extra tiles are weights-first with MXFP4 words, as the sweep's)."""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

import triton

from atom.backends import amd_compile
from atom.backends.triton_moe_tiles import TILES, Tile
from atom.bench.moe import SHAPES

BIN = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"


def ptxas(ptx: Path, cubin: Path) -> str:
    """ptxas -v's report; the Blackwell build where the plain one is older than Triton's PTX."""
    for name in ("ptxas", "ptxas-blackwell"):
        done = subprocess.run(
            [str(BIN / name), "-arch=sm_90a", "-v", str(ptx), "-o", str(cubin)],
            capture_output=True,
            text=True,
        )
        report = done.stdout + done.stderr
        if done.returncode == 0:
            return report
    raise RuntimeError(f"ptxas failed on {ptx}: {report[-500:]}")


def loop_instructions(cubin: Path) -> int:
    """Instructions between the longest backward branch and its target: the kernel's main K loop."""
    sass = subprocess.run(
        [str(BIN / "cuobjdump"), "-sass", str(cubin)], capture_output=True, text=True
    ).stdout
    addresses = [int(a, 16) for a in re.findall(r"^\s+/\*([0-9a-f]{4,})\*/", sass, re.M)]
    longest = 0
    for line in sass.splitlines():
        branch = re.search(r"/\*([0-9a-f]{4,})\*/.*\bBRA\s+0x([0-9a-f]+)", line)
        if branch and int(branch.group(2), 16) < int(branch.group(1), 16):
            start, end = int(branch.group(2), 16), int(branch.group(1), 16)
            longest = max(longest, sum(start <= a <= end for a in addresses))
    return longest


def check(launch: amd_compile.Launch, workdir: Path) -> dict:
    compiled = amd_compile.compile_for(launch, "sm90")
    ptx, cubin = workdir / f"{launch.kernel}.ptx", workdir / f"{launch.kernel}.cubin"
    ptx.write_text(compiled.asm["ptx"])
    report = ptxas(ptx, cubin)
    registers = re.search(r"Used (\d+) registers", report)
    spills = re.search(r"(\d+) bytes spill stores", report)
    copies = re.findall(
        r"cp\.async\.\w+\.shared\.global \[[^\]]*\], \[[^\]]*\], (0x[0-9a-f]+|\d+)", compiled.asm["ptx"]
    )
    return {
        "copy_bytes": sorted({int(size, 0) for size in copies}),  # cp.async sizes into shared memory
        "registers": int(registers.group(1)) if registers else None,
        "spill_bytes": int(spills.group(1)) if spills else 0,
        "shared_bytes": compiled.metadata.shared,
        "wgmma_serialized": "serialized" in report,
        "loop_instructions": loop_instructions(cubin),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="gpt-oss-20b", choices=sorted(SHAPES))
    parser.add_argument("--tile", action="append", default=[], help="block_m,block_n,block_k,warps,stages")
    args = parser.parse_args()
    tiles = [tile for _, tile in TILES["sm90"]]
    tiles += [Tile(*map(int, text.split(",")), words=True, swapped=True) for text in args.tile]
    print(f"triton {triton.__version__}, sm90, {args.shape}")
    with tempfile.TemporaryDirectory() as workdir:
        for tile in tiles:
            with amd_compile.recorded_launches("sm90") as launches:
                amd_compile.launch_moe(SHAPES[args.shape], tile)
            for launch in dict.fromkeys(launches):
                if "BLOCK_N" not in dict(launch.constexprs):  # the grouping kernels
                    continue
                row = check(launch, Path(workdir))
                shape = f"{tile.block_m}x{tile.block_n}x{tile.block_k} w{tile.num_warps} s{tile.num_stages}"
                print(
                    f"{launch.kernel:22} {shape:20} regs {row['registers']:>3}  spill {row['spill_bytes']:>4} B  "
                    f"smem {row['shared_bytes']:>6}  loop {row['loop_instructions']:>5} instr  "
                    f"cp.async {'/'.join(map(str, row['copy_bytes'])) or '-'} B"
                    + ("  wgmma SERIALIZED" if row["wgmma_serialized"] else "")
                )


if __name__ == "__main__":
    main()
