#!/usr/bin/env bash
# Make a Docker engine with BuildKit available: install Debian's docker.io when no daemon answers
# (and debootstrap, which `atom-build base bootstrap` needs, either way), start dockerd, wait for it.
set -euo pipefail

running() { docker info >/dev/null 2>&1 || /usr/bin/docker info >/dev/null 2>&1; }
need=()
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
running || command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
if [ ${#need[@]} -gt 0 ]; then
  echo "docker: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

if running; then
  echo "docker: daemon already running"
  exit 0
fi

# a dockerd killed without cleanup leaves its pid file, and a new dockerd refuses to start over it
pidfile=/var/run/docker.pid
if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  echo "docker: removing stale $pidfile"
  rm -f "$pidfile"
fi

log=${DOCKERD_LOG:-/var/log/atom-dockerd.log}
echo "docker: starting dockerd (log: $log)"
nohup dockerd >"$log" 2>&1 &

for _ in $(seq 1 60); do
  if /usr/bin/docker info >/dev/null 2>&1; then
    echo "docker: daemon ready"
    # every CI run adds build cache on a machine that keeps its docker state (65 GB filled this disk once):
    # keep the most recently used 20 GB
    /usr/bin/docker builder prune -f --keep-storage 20gb >/dev/null || echo "docker: build cache prune failed" >&2
    exit 0
  fi
  sleep 1
done
echo "docker: dockerd did not become ready in 60 s; last log lines:" >&2
tail -n 30 "$log" >&2
exit 1
