#!/usr/bin/env bash
# Tensor parallelism on two GPUs of one host, in one device command (see docs/tensor-parallel.md):
# the all-reduce latency eager and inside CUDA graphs, then `atom bench tp` on the gpt-oss shapes
# (N = 1 vs N = 2: decode tok/s at batch 1 and 64, collective time per step, fp32 agreement).
# Usage on the GPU machine, from the repo root:  bash bench/tp_h200.sh [20b|120b|all]   (results in $OUT)
set -uo pipefail
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
source bench/gpu_env.sh typer zmq msgspec
# NVLink multicast stays off on these machines (the device notes say why)
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
what=${1:-all}
python -c "import torch, triton; print('gpus', torch.cuda.device_count(), torch.cuda.get_device_name(0), 'torch', torch.__version__, 'triton', triton.__version__)" | tee "$OUT/versions.txt"
if [ "$what" != 120b ]; then
  timeout 180 torchrun --nproc-per-node 2 -m atom.bench.allreduce --json-out "$OUT/allreduce.json" 2>&1 | grep -v Warning | tail -8
  timeout 420 python -m atom.cli bench tp --shape gpt-oss-20b --json-out "$OUT/tp-20b.json" 2>&1 | grep -v Warning | tail -12
fi
if [ "$what" != 20b ]; then
  timeout 560 python -m atom.cli bench tp --shape gpt-oss-120b --json-out "$OUT/tp-120b.json" 2>&1 | grep -v Warning | tail -12
fi
