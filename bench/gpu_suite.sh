#!/usr/bin/env bash
# Everything GPU-side in one device command (see docs/performance.md):
#   kernel tests on the GPU, greedy agreement, the MoE microbenchmark, the gpt-oss-20b offline benchmark next
#   to HF transformers, and the serving benchmark (bench/serve_bench.sh) when the server's packages import.
# Usage on the GPU machine, from the repo root:  bash bench/gpu_suite.sh   (results under $OUT, default ./bench-out)
# A copy of the real triton_kernels matching the GPU's Triton may be placed in third_party/ (git-ignored).
set -euo pipefail
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
# typer/pytest and the server's packages may be carried as wheels (bench/prepare_third_party.sh)
source bench/gpu_env.sh typer pytest fastapi uvicorn httpx prometheus_client zmq msgspec httptools uvloop
python - <<'PY' | tee "$OUT/versions.txt"
import torch, triton, transformers
print("gpu", torch.cuda.get_device_name(0), "torch", torch.__version__, "triton", triton.__version__,
      "transformers", transformers.__version__)
PY
python -m atom.cli backends --model "$(python -c 'from atom.bench.shapes import write_shape; import tempfile, pathlib; print(write_shape("gpt-oss-20b", pathlib.Path(tempfile.mkdtemp())/"m"))')" | tee "$OUT/backends.txt"
python -m pytest -q -p no:cacheprovider tests/engine/test_backends_vs_torch.py tests/engine/test_pointwise_kernels.py tests/engine/test_selection_policy.py -rf 2>&1 | tail -"${TEST_TAIL:-8}" | tee "$OUT/kernel-tests.txt" || true
for args in "--dtype float32" "--dtype bfloat16" "--dtype bfloat16 --moe-backend triton_kernels"; do
  python -m atom.cli bench agree $args | tee -a "$OUT/agree.jsonl"
done
python -m atom.cli bench moe ${MOE_ARGS:---shape gpt-oss-20b --shape gpt-oss-120b} --json-out "$OUT/moe.json" | tee "$OUT/moe.txt"
python -m atom.cli bench gpt-oss ${GPT_OSS_ARGS:---profile} --json-out "$OUT/gpt-oss.json" | tee "$OUT/gpt-oss.txt"
if python -c "import fastapi, uvicorn, httpx, zmq, msgspec" 2>/dev/null; then
  bash bench/serve_bench.sh
else
  echo "serving benchmark skipped: fastapi/uvicorn/httpx not importable (carry their wheels in third_party/wheels)"
fi
