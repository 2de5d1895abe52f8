#!/usr/bin/env bash
# Serving benchmark: start `atom serve`, wait for health, run `atom bench serve`, stop the server.
# Defaults are the GPU run (gpt-oss-20b shape, random MXFP4 weights); override for other machines, e.g.
#   SERVE_MODEL=~/.cache/atom-build/models/smollm2-135m SERVE_ARGS= NUM_PROMPTS=8 bash bench/serve_bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
PORT=${PORT:-8123}
if [ -z "${SERVE_MODEL:-}" ]; then
  SERVE_MODEL=$(python -c 'import pathlib, tempfile; from atom.bench.shapes import write_shape; print(write_shape("gpt-oss-20b", pathlib.Path(tempfile.mkdtemp()) / "gpt-oss-20b"))')
fi
# shellcheck disable=SC2086  # SERVE_ARGS is a list of flags
python -m atom.cli serve --model "$SERVE_MODEL" --port "$PORT" ${SERVE_ARGS---load-format dummy --max-num-seqs 64 --kv-cache-memory-gb 16} \
  > "$OUT/serve.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 1 600); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  kill -0 $server 2>/dev/null || { echo "server exited; see $OUT/serve.log"; tail -20 "$OUT/serve.log"; exit 1; }
  sleep 1
done
python -m atom.cli bench serve --url "http://127.0.0.1:$PORT" --concurrency "${CONCURRENCY:-16}" \
  --num-prompts "${NUM_PROMPTS:-128}" --input-len "${INPUT_LEN:-512}" --output-len "${OUTPUT_LEN:-256}" \
  --json-out "$OUT/serve.json" | tee "$OUT/serve.txt"
