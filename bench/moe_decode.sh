#!/usr/bin/env bash
# Decode-sized MoE on one GPU in one device command: the MoE kernel tests, the GEMV tile sweep at M = 1 and 8
# on both gpt-oss shapes, the layer with routing for ours and triton_kernels, then batch-1/16 decode through
# the engine. Usage on the GPU machine:  bash bench/moe_decode.sh   (results under $OUT)
# Env: SWEEP_MS (default "1 8"), SWEEP_BUDGET_S (per shape and M, default 45), ENGINE=0 skips the engine runs.
set -uo pipefail
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
source bench/gpu_env.sh typer pytest zmq msgspec
export PYTHONFAULTHANDLER=1
python -c "import torch, triton; print(torch.cuda.get_device_name(0), 'torch', torch.__version__, 'triton', triton.__version__)" | tee "$OUT/versions.txt"
timeout -s ABRT 240 python -m pytest -q -p no:cacheprovider tests/engine/test_backends_vs_torch.py tests/engine/test_moe_swapped.py -k "moe or tile or word or decod or fragment" -rf 2>&1 | tail -6 | tee "$OUT/kernel-tests.txt"
ms=()
for m in ${SWEEP_MS:-1 8}; do ms+=(--m "$m"); done
timeout -s ABRT 400 python -m atom.cli bench moe-tiles --shape gpt-oss-20b --shape gpt-oss-120b "${ms[@]}" \
  --budget-s "${SWEEP_BUDGET_S:-45}" --json-out "$OUT/moe-tiles.json" | tee "$OUT/moe-tiles.txt"
timeout -s ABRT 240 python -m atom.cli bench moe --shape gpt-oss-20b --shape gpt-oss-120b --m 1 --m 2 --m 4 --m 8 --m 32 \
  --backend triton --backend triton_kernels --json-out "$OUT/moe.json" | tee "$OUT/moe.txt"
if [ "${ENGINE:-1}" = 1 ]; then  # the engine with the MoE backend it selects (triton_kernels, ours at decode)
  timeout -s ABRT 300 python -m atom.cli bench gpt-oss --no-hf ${GPT_OSS_ARGS:-} --json-out "$OUT/gpt-oss.json" 2>&1 \
    | grep -v -i warn | tail -14 | tee "$OUT/gpt-oss.txt"
fi
