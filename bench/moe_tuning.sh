#!/usr/bin/env bash
# MoE kernel tuning on the GPU in one device command: our kernel tests, the MoE microbenchmark with each
# backend's kernels profiled, the table's tiles checked at real shapes, and the tile sweep whose winners go
# into triton_moe_tiles.TILES.
# Usage on the GPU machine, from the repo root:  bash bench/moe_tuning.sh   (results under $OUT)
# Env: SHAPES (default gpt-oss-20b), TUNE_MS (sweep sizes), SWEEP_BUDGET_S (per shape and M).
set -euo pipefail
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
source bench/gpu_env.sh typer pytest zmq msgspec
python -m pytest -q -p no:cacheprovider tests/engine/test_backends_vs_torch.py tests/engine/test_moe_swapped.py -rf 2>&1 | tail -6 | tee "$OUT/kernel-tests.txt" || true
shapes=()
for s in ${SHAPES:-gpt-oss-20b}; do shapes+=(--shape "$s"); done
ms=()
for m in ${TUNE_MS:-1 128 8192}; do ms+=(--m "$m"); done
python -m atom.cli bench moe "${shapes[@]}" "${ms[@]}" --backend triton --backend triton_kernels --backend torch \
  --profile --json-out "$OUT/moe-profile.json" | tee "$OUT/moe-profile.txt"
# the table's tiles at real gpt-oss shapes, several runs on allocated, zeroed and NaN-poisoned workspaces
python bench/moe_tile_check.py --m 1024 --m 8192 | tee "$OUT/moe-tile-check.txt"
python -m atom.cli bench moe-tiles "${shapes[@]}" "${ms[@]}" --budget-s "${SWEEP_BUDGET_S:-75}" \
  --json-out "$OUT/moe-tiles.json" | tee "$OUT/moe-tiles.txt"
