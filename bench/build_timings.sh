#!/usr/bin/env bash
# Build timings of the cpu recipe with a real Docker engine (run ci/start-dockerd.sh first):
#   cold (no BuildKit cache), no-op rebuild, rebuild after an engine-only change; plus the full image's size.
# Prints a table and writes $OUT/build-timings.json (OUT defaults to ./bench-out).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-bench-out}
mkdir -p "$OUT"
CA=()
[ -f /etc/ssl/certs/ca-certificates.crt ] && CA=(--ca-cert /etc/ssl/certs/ca-certificates.crt)
FIND_LINKS=${ATOM_FIND_LINKS:-/opt/wheels}
BUNDLE=$(mktemp -d)
DOCKER=${DOCKER:-/usr/bin/docker}
PROBE=engine/atom/_build_timing_probe.py
trap 'rm -rf "$BUNDLE" "$PROBE"' EXIT

build() {
  atom-build wheels --recipe cpu --find-links "$FIND_LINKS" "${CA[@]}" --out "$BUNDLE" >/dev/null
  atom-build image --recipe cpu --bundle "$BUNDLE" --tag atom-timing:cpu "${CA[@]}" >/dev/null
}
seconds() {
  local start end
  start=$(date +%s.%N)
  "$@"
  end=$(date +%s.%N)
  python3 -c "print(round($end - $start, 1))"
}

[ -n "$($DOCKER images -q atom-base:bookworm)" ] || atom-build base bootstrap --tag atom-base:bookworm >/dev/null
$DOCKER builder prune -af >/dev/null
$DOCKER rmi -f atom-timing:cpu atom-timing:full >/dev/null 2>&1 || true
cold=$(seconds build)
noop=$(seconds build)
echo "# changed only to time an engine-only rebuild" > "$PROBE"
engine_change=$(seconds build)
rm -f "$PROBE"
atom-build image --recipe cpu --full --find-links "$FIND_LINKS" "${CA[@]}" --tag atom-timing:full >/dev/null
size() { $DOCKER image inspect -f '{{.Size}}' "$1"; }
python3 - "$cold" "$noop" "$engine_change" "$(size atom-timing:cpu)" "$(size atom-timing:full)" \
  "$(size atom-base:bookworm)" "$OUT/build-timings.json" <<'PY'
import json, sys
cold, noop, engine, clean, full, base, out = sys.argv[1:]
result = {"cold_s": float(cold), "noop_s": float(noop), "engine_change_s": float(engine),
          "clean_image_bytes": int(clean), "full_image_bytes": int(full), "base_image_bytes": int(base)}
for key, value in result.items():
    print(f"{key:20} {value}")
open(out, "w").write(json.dumps(result, indent=2))
PY
