#!/usr/bin/env bash
# The new models on one GPU (docs/performance.md): the FP8 linear and MLA kernels against their torch
# references, then decode tok/s of DeepSeek-V3 (cut to 5 layers: 3 dense + 2 MoE, random FP8 projections)
# and Qwen3-30B-A3B (cut to 12 layers) next to HF transformers on the same shapes. Each stage logs to $OUT.
set -uo pipefail
cd "$(dirname "$0")/.."
source bench/gpu_env.sh typer pytest zmq msgspec
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
export PYTHONFAULTHANDLER=1
python -c "import torch, triton, transformers; print(torch.cuda.get_device_name(0), torch.__version__, triton.__version__, transformers.__version__)" | tee "$OUT/versions.txt"
timeout -s ABRT 300 python -m pytest -q -p no:cacheprovider tests/engine/test_backends_vs_torch.py -k "fp8 or mla" -rf \
  > "$OUT/kernel-tests.txt" 2>&1; tail -3 "$OUT/kernel-tests.txt"
timeout -s ABRT ${DS_TIMEOUT:-420} python -m atom.cli bench model --shape deepseek-v3 --layers ${DS_LAYERS:-5} \
  --json-out "$OUT/deepseek-v3.json" > "$OUT/deepseek-v3.log" 2>&1; grep '^{' "$OUT/deepseek-v3.log"; tail -1 "$OUT/deepseek-v3.log"
# the FP8 linear's worth: the same model with its projections dequantized to bf16 at load instead
timeout -s ABRT 300 python -m atom.cli bench model --shape deepseek-v3 --layers ${DS_LAYERS:-5} --no-hf \
  --linear-backend torch --json-out "$OUT/deepseek-v3-dequantized.json" > "$OUT/deepseek-v3-dequantized.log" 2>&1
grep '^{' "$OUT/deepseek-v3-dequantized.log"; tail -1 "$OUT/deepseek-v3-dequantized.log"
[ -n "${SKIP_QWEN:-}" ] && exit 0
timeout -s ABRT ${QWEN_TIMEOUT:-300} python -m atom.cli bench model --shape qwen3-30b-a3b --layers ${QWEN_LAYERS:-12} \
  --json-out "$OUT/qwen3-moe.json" > "$OUT/qwen3-moe.log" 2>&1; grep '^{' "$OUT/qwen3-moe.log"; tail -1 "$OUT/qwen3-moe.log"
