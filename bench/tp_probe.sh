#!/usr/bin/env bash
# Where a tensor-parallel run stops (when one hangs): each stage under a short timeout that makes Python
# print every thread's stack (SIGABRT + faulthandler), logs in $OUT.
set -uo pipefail
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
source bench/gpu_env.sh typer zmq msgspec
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1 PYTHONFAULTHANDLER=1 ATOM_TRACE=1
export NCCL_GRAPH_REGISTER=0
timeout -s ABRT 75 torchrun --nproc-per-node 2 -m atom.bench.allreduce > "$OUT/allreduce.log" 2>&1
echo "allreduce rc $?"; grep -v "Warning\|warn" "$OUT/allreduce.log" | grep -m 30 "rank\|all-reduce\|eager\|File\|Thread\|Error" | head -40
cat > /tmp/tp_small.py <<'PY'
import sys, tempfile, pathlib, time
from atom import LLM, SamplingParams
from atom.bench.shapes import write_shape
folder = write_shape("gpt-oss-20b", pathlib.Path(tempfile.mkdtemp()) / "m", 2)
for eager in (True, False):
    t = time.time()
    with LLM(str(folder), load_format="dummy", tensor_parallel_size=2, enforce_eager=eager, max_num_seqs=8, kv_cache_memory_gb=1) as llm:
        print("eager" if eager else "graphs", "loaded", round(time.time() - t, 1), flush=True)
        outs = llm.generate([[1, 2, 3, 4]], SamplingParams(max_tokens=8, temperature=0, ignore_eos=True))
        print("tokens", outs[0].output_token_ids, flush=True)
PY
timeout -s ABRT 100 python /tmp/tp_small.py > "$OUT/tp_small.log" 2>&1
echo "tp_small rc $?"; grep -v "Warning\|warn" "$OUT/tp_small.log" | head -60
