#!/usr/bin/env bash
# The decode step's dense GEMV and the one-shot all-reduce on two GPUs of one host, in device commands
# (docs/performance.md): `bash bench/decode_tp.sh gemv` (one GPU: the kernel tests, the GEMV tile sweep,
# the 20b decode step profiled), `bash bench/decode_tp.sh kernels` (the all-reduce against NCCL), then `bash bench/decode_tp.sh tp` (`atom bench tp` on the 120b shape, then
# N = 2 at batch 1 with every all-reduce in NCCL for comparison). Logs and JSON in $OUT.
set -uo pipefail
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
source bench/gpu_env.sh typer pytest zmq msgspec
export NCCL_NVLS_ENABLE=0 NVSHMEM_DISABLE_NVLS=1 PYTHONFAULTHANDLER=1
stage() {  # name timeout command...
  local name=$1 limit=$2; shift 2
  timeout -s ABRT "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name: exit $?"
  grep -v -i "warn" "$OUT/$name.log" | grep -v "^ *$" | tail -${TAIL:-24}
}
case "${1:-kernels}" in
  gemv)  # one GPU: the kernel tests, the GEMV tile sweep, the 20b engine's decode step profiled
    stage tests 240 python -m pytest -q -p no:cacheprovider tests/engine/test_gemv.py tests/engine/test_pointwise_kernels.py
    TAIL=22 stage linear 300 python -m atom.cli bench linear --m 1 --m 2 --json-out "$OUT/linear.json"
    TAIL=60 stage gpt-oss 300 python -m atom.cli bench gpt-oss --no-hf --profile --json-out "$OUT/gpt-oss.json"
    ;;
  kernels)
    ATOM_PEER_ALLREDUCE=1 stage allreduce 120 torchrun --nproc-per-node 2 -m atom.bench.allreduce --json-out "$OUT/allreduce.json"
    ;;
  tp)  # BATCHES="--batch 1" for batch 1 only; QUICK=1: the all-reduce check first, in the same command
    [ "${QUICK:-0}" = 1 ] && ATOM_PEER_ALLREDUCE=1 stage allreduce 120 torchrun --nproc-per-node 2 -m atom.bench.allreduce --json-out "$OUT/allreduce.json"
    ATOM_PEER_ALLREDUCE=1 TAIL=8 stage tp-120b 330 python -m atom.cli bench tp --shape gpt-oss-120b ${BATCHES:-} --json-out "$OUT/tp-120b.json"
    ATOM_PEER_ALLREDUCE=0 TAIL=3 stage tp-nccl 150 python -m atom.cli bench tp --shape gpt-oss-120b --tp 2 --batch 1 --json-out "$OUT/tp-nccl.json"
    ;;
esac
