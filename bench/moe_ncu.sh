#!/usr/bin/env bash
# Nsight Compute on the MoE layer's GEMM kernels, ours against triton_kernels', at the sizes where ours is
# slower: where each spends its time (stall reasons, occupancy, tensor-pipe and memory throughput), in one
# device command. Usage on the GPU machine, from the repo root:  bash bench/moe_ncu.sh   (reports under $OUT)
# Env: SHAPE (default gpt-oss-20b), NCU_MS (default "8192 128"). Needs ncu with hardware counters.
set -euo pipefail
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
source bench/gpu_env.sh typer zmq msgspec
sections=()
for s in SpeedOfLight LaunchStats Occupancy WarpStateStats SchedulerStats ComputeWorkloadAnalysis \
  MemoryWorkloadAnalysis InstructionStats SourceCounters; do sections+=(--section "$s"); done
for m in ${NCU_MS:-8192 128}; do for backend in triton triton_kernels; do
  report="$OUT/moe-${SHAPE:-gpt-oss-20b}-m$m-$backend"
  # the first launches of the backend's GEMM kernels (its correctness call)
  ncu --clock-control none --kernel-name 'regex:gate_up_kernel|down_kernel|matmul_ogs' --launch-count 2 \
    "${sections[@]}" -f -o "$report" \
    python -m atom.cli bench moe --shape "${SHAPE:-gpt-oss-20b}" --m "$m" --backend "$backend" | tail -2
  ncu --import "$report.ncu-rep" --page details --print-units base > "$report.txt"
  grep -E "^  [a-z_]+.*\(|Duration|Registers Per|Achieved Occupancy|Theoretical Occupancy|Block Size|Grid Size|Shared Memory Config|Dynamic Shared|Compute \(SM\) Throughput|Memory Throughput|Warp Cycles Per Issued|Issue Slots Busy|No Eligible|Stall" "$report.txt" | head -80
done; done
