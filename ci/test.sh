#!/usr/bin/env bash
# The README's test command: every test, the Docker tier included (it fails, not skips, when CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."
ruff check builder engine tests
python3 -m pytest -q -rA --durations=15 "$@"
