#!/usr/bin/env bash
# Structured outputs' cost on one GPU: `atom bench grammar --throughput` (output tok/s with and without a
# JSON schema, batch 1 and 16) on the gpt-oss-20b shape with random MXFP4 weights and SmolLM2's tokenizer
# (carried in third_party/ by bench/prepare_third_party.sh; the model's vocabulary is larger, which the
# grammar's token table pads). Writes $OUT/grammar_h200.json.
set -uo pipefail
cd "$(dirname "$0")/.."
source bench/gpu_env.sh typer llguidance zmq msgspec
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
model=$(mktemp -d)/gpt-oss-20b
python -c "from pathlib import Path; from atom.bench.shapes import write_shape; write_shape('gpt-oss-20b', Path('$model'))"
cp third_party/smollm2-tokenizer/* "$model"/
python -m atom.cli bench grammar --model "$model" --load-format dummy --throughput --batch 1 --batch 16 \
  --json "$OUT/grammar_h200.json" 2>&1 | tee "$OUT/grammar_h200.log"
