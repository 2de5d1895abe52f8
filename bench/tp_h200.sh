#!/usr/bin/env bash
# Tensor parallelism on two GPUs of one host, in one device command (see docs/tensor-parallel.md):
# the all-reduce latency eager and inside CUDA graphs, then `atom bench tp` on the gpt-oss shapes
# (N = 1 vs N = 2: decode tok/s at batch 1 and 64, collective time per step, fp32 agreement).
# Each stage under its own timeout, which makes a stuck Python print its stacks (SIGABRT + faulthandler).
# Usage on the GPU machine, from the repo root:  bash bench/tp_h200.sh   (logs and JSON in $OUT)
set -uo pipefail
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
source bench/gpu_env.sh typer zmq msgspec
# NVLink multicast stays off on these machines (the device notes say why)
export NCCL_NVLS_ENABLE=0 NVSHMEM_DISABLE_NVLS=1 PYTHONFAULTHANDLER=1
python -c "import torch, triton; print('gpus', torch.cuda.device_count(), torch.cuda.get_device_name(0), 'torch', torch.__version__, 'triton', triton.__version__)" | tee "$OUT/versions.txt"
stage() {  # name timeout command...
  local name=$1 limit=$2; shift 2
  timeout -s ABRT "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name: exit $?"
  grep -v -i "warn" "$OUT/$name.log" | grep -v "^ *$" | tail -${TAIL:-14}
}
# NCCL next to the engine's one-shot all-reduce (alone and fused with the norm), bit for bit
ATOM_PEER_ALLREDUCE=1 stage allreduce 90 torchrun --nproc-per-node 2 -m atom.bench.allreduce --json-out "$OUT/allreduce.json"
for shape in ${SHAPES:-gpt-oss-120b gpt-oss-20b}; do
  limit_var="LIMIT_${shape#gpt-oss-}"
  stage "tp-${shape#gpt-oss-}" "${!limit_var:-300}" python -m atom.cli bench tp --shape "$shape" --json-out "$OUT/tp-${shape#gpt-oss-}.json"
done
