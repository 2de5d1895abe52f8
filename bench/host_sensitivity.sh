#!/usr/bin/env bash
# How much a busy CPU slows the engine's step (one device command): the offline benchmark of
# serve_scale.sh alone, then while BURNERS other processes spin (as a server's API process and benchmark
# clients do). A step that slows is host-bound: Python and kernel launches, not the GPU, set its pace.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
lscpu | grep -E "^CPU\(s\)|Thread|Core|Socket|Model name" || true
source bench/gpu_env.sh typer httpx
MODEL=$(python -c 'import pathlib, tempfile; from atom.bench.shapes import write_shape; print(write_shape("gpt-oss-20b", pathlib.Path(tempfile.mkdtemp()) / "gpt-oss-20b"))')
offline() {
  python -m atom.cli bench offline --model "$MODEL" --load-format dummy --num-prompts 512 --max-num-seqs 256 \
    --kv-cache-memory-gb 60 --input-len 512 --output-len 512 --json-out "$OUT/host-$1.json" > /dev/null
  python -c "import json; d = json.load(open('$OUT/host-$1.json')); print('$1', d['output_throughput_tok_s'], d['engine'])"
}
offline compile-pass
offline alone
pids=()
for _ in $(seq 1 "${BURNERS:-6}"); do python -c "while True: pass" & pids+=($!); done
offline "busy-${BURNERS:-6}"
kill "${pids[@]}"
