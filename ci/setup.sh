#!/usr/bin/env bash
# Install the project and its test dependencies. torch is pinned first so a CPU machine never pulls a
# multi-GB CUDA build (pip takes the local CPU wheel on these machines; see docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q "torch==2.13.0"
python3 -m pip install -q -e ".[test]" -e "engine[serve]"
# the third-party clients of the compatibility tests, apart (ci/clients-requirements.txt says why)
[ -x .venv-clients/bin/python ] || { rm -rf .venv-clients; python3 -m venv --system-site-packages .venv-clients; }
.venv-clients/bin/python -m pip install -q -r ci/clients-requirements.txt
