# Sourced by the GPU-side bench scripts: install what the GPU machine lacks from the wheels carried in the
# git-ignored third_party/wheels (it has no network), and put the engine and third_party/ (the carried
# triton_kernels) on the import path. Usage: source bench/gpu_env.sh typer pytest ...
for pkg in "$@"; do
  dist=${pkg/_/-}
  [ "$pkg" = zmq ] && dist=pyzmq  # the one import name that is not its distribution's
  python -c "import $pkg" 2>/dev/null || python -m pip install -q --no-index --find-links third_party/wheels "$dist" || true
done
export PYTHONPATH="$PWD/engine:$PWD/third_party${PYTHONPATH:+:$PYTHONPATH}"
