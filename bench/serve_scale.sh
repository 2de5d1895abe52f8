#!/usr/bin/env bash
# The engine-core/server boundary, measured (one device command): offline LLM.generate, then `atom serve`
# driven by `atom bench serve`, on the same workload: gpt-oss-20b shape, random MXFP4 weights, NUM_PROMPTS
# requests of INPUT_LEN + OUTPUT_LEN tokens, 256 at a time; then 64 requests 16 at a time, both ways.
# Prints a table and writes $OUT/serve-scale.json (OUT defaults to ./bench-out).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
source bench/gpu_env.sh typer pytest fastapi uvicorn httpx prometheus_client zmq msgspec httptools uvloop
N=${NUM_PROMPTS:-512}
IN=${INPUT_LEN:-512}
OL=${OUTPUT_LEN:-512}
KV=${KV_GB:-60}
PORT=${PORT:-8123}
MODEL=$(python -c 'import pathlib, tempfile; from atom.bench.shapes import write_shape; print(write_shape("gpt-oss-20b", pathlib.Path(tempfile.mkdtemp()) / "gpt-oss-20b"))')
common=(--input-len "$IN" --output-len "$OL")
# a Triton cache of its own: the result does not depend on what earlier runs on this machine compiled
export TRITON_CACHE_DIR=${TRITON_CACHE_DIR:-$(mktemp -d)}
# A fresh machine compiles Triton kernels for each shape the workload brings (prefill chunks, mixed
# batches): one untimed pass first, so neither side of the comparison pays for compiling.
python -m atom.cli bench offline --model "$MODEL" --load-format dummy --num-prompts "$N" --max-num-seqs 256 \
  --kv-cache-memory-gb "$KV" "${common[@]}" --json-out "$OUT/compile-pass.json" > /dev/null
# which Triton kernels the server still compiles after that pass (shapes the offline loop never made)
cache=$TRITON_CACHE_DIR
ls "$cache" 2>/dev/null | sort > "$OUT/triton-cache-before.txt" || true
[ -n "${SKIP_OFFLINE:-}" ] || {
python -m atom.cli bench offline --model "$MODEL" --load-format dummy --num-prompts "$N" --max-num-seqs 256 \
  --kv-cache-memory-gb "$KV" "${common[@]}" --json-out "$OUT/offline-256.json"
[ -n "${ONLY_256:-}" ] || python -m atom.cli bench offline --model "$MODEL" --load-format dummy --num-prompts 64 \
  --max-num-seqs 16 --kv-cache-memory-gb "$KV" "${common[@]}" --json-out "$OUT/offline-16.json"
}

serve() {  # $1: max-num-seqs
  python -m atom.cli serve --model "$MODEL" --port "$PORT" --load-format dummy --max-num-seqs "$1" \
    --kv-cache-memory-gb "$KV" --max-queued-requests 4096 > "$OUT/serve-$1.log" 2>&1 &
  server=$!
  for _ in $(seq 1 900); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && return 0
    kill -0 $server 2>/dev/null || { tail -20 "$OUT/serve-$1.log"; exit 1; }
    sleep 1
  done
  echo "server did not become healthy"; exit 1
}
stop() { kill "$server"; wait "$server" || true; }

serve 256
# who uses the CPU mid-run: the API process, the engine core, the benchmark client
(sleep 25; ps -eo pid,ppid,pcpu,rss,args --sort=-pcpu | grep -E "atom|spawn_main" | grep -v grep | head -6 \
  > "$OUT/cpu-256.txt") &
# several client processes: one Python process parsing 256 streams delays the closed loop's next request
python -m atom.cli bench serve --url "http://127.0.0.1:$PORT" --concurrency 256 --num-prompts "$N" "${common[@]}" \
  --workers "${WORKERS:-4}" --json-out "$OUT/serve-256.json"
ls "$cache" 2>/dev/null | sort | comm -13 "$OUT/triton-cache-before.txt" - | while read -r d; do
  ls "$cache/$d" | grep -v '^__grp__' | head -1
done | sort | uniq -c > "$OUT/compiled-during-serve-256.txt" || true
[ -z "${REPEAT_256:-}" ] || python -m atom.cli bench serve --url "http://127.0.0.1:$PORT" --concurrency 256 \
  --num-prompts "$N" "${common[@]}" --seed 1 --workers "${WORKERS:-4}" --json-out "$OUT/serve-256-again.json"
[ -z "${ONE_CLIENT_TOO:-}" ] || python -m atom.cli bench serve --url "http://127.0.0.1:$PORT" --concurrency 256 \
  --num-prompts "$N" "${common[@]}" --seed 1 --json-out "$OUT/serve-256-one-client.json"
stop
if [ -z "${ONLY_256:-}" ]; then
  serve 16
  python -m atom.cli bench serve --url "http://127.0.0.1:$PORT" --concurrency 16 --num-prompts 64 "${common[@]}" \
    --json-out "$OUT/serve-16.json"
  stop
fi

python - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
nan = float("nan")
def load(path):
    return json.load(open(path)) if os.path.exists(path) else None
rows = {}
for name, off_name in (("256", "256"), ("256-again", "256"), ("256-one-client", "256"), ("16", "16")):
    srv, off = load(f"{out}/serve-{name}.json"), load(f"{out}/offline-{off_name}.json") or {}
    if srv is None:
        continue
    oe, se = off.get("engine") or {}, srv.get("engine") or {}
    off_tok = off.get("output_throughput_tok_s", nan)
    rows[name] = {
        "offline_tok_s": off_tok, "offline_step_ms": off.get("mean_step_ms", nan),
        "offline_ttft_ms_mean": (off.get("ttft_ms") or {}).get("mean", nan),
        "offline_tpot_ms_mean": (off.get("tpot_ms") or {}).get("mean", nan),
        "offline_mean_batch": oe.get("mean_batch_sequences", nan),
        "offline_core_step_ms": oe.get("mean_step_ms", nan),
        "server_tok_s": srv["output_throughput_tok_s"], "workers": srv.get("workers", 1),
        "server_vs_offline": round(srv["output_throughput_tok_s"] / off_tok, 3),
        "ttft_ms_mean": round(srv["ttft_ms"]["mean"], 1), "ttft_ms_p99": round(srv["ttft_ms"]["p99"], 1),
        "tpot_ms_mean": round(srv["tpot_ms"]["mean"], 2), "tpot_ms_p99": round(srv["tpot_ms"]["p99"], 2),
        "server_mean_batch": se.get("mean_batch_sequences", nan),
        "server_core_step_ms": se.get("mean_step_ms", nan),
        "server_ipc_ms_per_step": se.get("mean_ipc_ms_per_step", nan),
        # graph (decode) steps vs eager (prefill, mixed) steps, each side: where a slower step comes from
        **{f"{side}_{k}": e.get(k) for side, e in (("offline", oe), ("server", se))
           for k in ("steps", "graph_steps", "mean_graph_step_ms", "mean_eager_step_ms", "kernel_compiles")},
    }
print(f"{'run':>15} {'offline tok/s':>13} {'server tok/s':>12} {'ratio':>6} {'TTFT off/srv ms':>16} "
      f"{'TPOT off/srv ms':>16} {'batch off/srv':>14} {'core step off/srv':>18} {'ipc ms':>7}")
for c, r in rows.items():
    print(f"{c:>15} {r['offline_tok_s']:>13,.0f} {r['server_tok_s']:>12,.0f} {r['server_vs_offline']:>6.1%} "
          f"{r['offline_ttft_ms_mean']:>7.0f}/{r['ttft_ms_mean']:<8.0f} {r['offline_tpot_ms_mean']:>7.2f}/{r['tpot_ms_mean']:<8.2f} "
          f"{r['offline_mean_batch']:>6.1f}/{r['server_mean_batch']:<7.1f} "
          f"{r['offline_core_step_ms']:>8.2f}/{r['server_core_step_ms']:<9.2f} {r['server_ipc_ms_per_step']:>7.3f}")
print(f"{'run':>15} {'steps off/srv':>14} {'graph steps off/srv':>20} {'graph step ms off/srv':>22} {'eager step ms off/srv':>22} {'compiles off/srv':>17}")
for c, r in rows.items():
    print(f"{c:>15} {r['offline_steps']!s:>6}/{r['server_steps']!s:<7} {r['offline_graph_steps']!s:>9}/{r['server_graph_steps']!s:<10} "
          f"{r['offline_mean_graph_step_ms']!s:>10}/{r['server_mean_graph_step_ms']!s:<11} "
          f"{r['offline_mean_eager_step_ms']!s:>10}/{r['server_mean_eager_step_ms']!s:<11} "
          f"{r['offline_kernel_compiles']!s:>8}/{r['server_kernel_compiles']!s:<8}")
json.dump(rows, open(f"{out}/serve-scale.json", "w"), indent=2)
PY
