# Rendered by atom-build from recipes/rocm-gfx950.toml (recipe sha256 9c98aa123597ac93).
# Do not edit by hand: change the recipe or images/*.j2 and run `atom-build render`.
# Build context: the repository root (.dockerignore keeps it to engine/, images/scripts/, wheelhouse/, bundle/).
ARG BASE_IMAGE="rocm/dev-ubuntu-24.04:7.2.1-complete@sha256:3db551c4e1229aac1857ac44fcb6141bb749f41348eb572452f11279153c13c3"
ARG GPU_ARCHS="gfx942;gfx950"
ARG ENABLE_CK="1"
ARG MAX_JOBS=""
ARG PIP_INDEX_URL="https://pypi.org/simple"

# Single-stage development image: compilers, sources and every component built in place.
FROM ${BASE_IMAGE}
ARG GPU_ARCHS
ARG ENABLE_CK
ARG MAX_JOBS
ARG PIP_INDEX_URL
RUN apt-get update \
 && apt-get install -y --no-install-recommends git build-essential ccache cmake ninja-build python3-dev python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/atom
ENV PATH=/opt/atom/bin:$PATH

RUN --mount=type=secret,id=ca_cert --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=wheelhouse,target=/wheelhouse --mount=type=bind,source=images/scripts,target=/scripts \
    if [ -f /run/secrets/ca_cert ]; then export PIP_CERT=/run/secrets/ca_cert; fi \
 && export PIP_INDEX_URL="${PIP_INDEX_URL}" PIP_FIND_LINKS=/wheelhouse PIP_DISABLE_PIP_VERSION_CHECK=1 \
 && pip download --no-deps --only-binary=:all: --dest /wheels --index-url https://download.pytorch.org/whl/rocm7.1 torch==2.10.0+rocm7.1 \
 && python /scripts/bundle.py check-hash /wheels torch 008ee0d77bb8b5f9f4ee1f00212019c4619171e3c4195de56f253331b3bc320d

RUN --mount=type=secret,id=ca_cert --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=wheelhouse,target=/wheelhouse --mount=type=bind,source=images/scripts,target=/scripts --mount=type=cache,target=/root/.cache/ccache,id=ccache-triton \
    if [ -f /run/secrets/ca_cert ]; then export PIP_CERT=/run/secrets/ca_cert; fi \
 && export PIP_INDEX_URL="${PIP_INDEX_URL}" PIP_FIND_LINKS=/wheelhouse PIP_DISABLE_PIP_VERSION_CHECK=1 \
 && jobs="${MAX_JOBS:-$(awk -v g=4 '/MemAvailable/ {j=int($2/1048576/g); print (j<1?1:j)}' /proc/meminfo)}" \
 && jobs="$(( jobs < $(nproc) ? jobs : $(nproc) ))" \
 && git clone --filter=blob:none https://github.com/ROCm/triton /src/triton \
 && git -C /src/triton checkout --detach 285c85383660b2e4aac38d4947d23aa61dab3ce2 \
 && export SOURCE_DATE_EPOCH="$(git -C /src/triton log -1 --format=%ct)" CCACHE_DIR=/root/.cache/ccache \
      CMAKE_C_COMPILER_LAUNCHER=ccache CMAKE_CXX_COMPILER_LAUNCHER=ccache \
 && cd /src/triton/. \
 && MAX_JOBS="$jobs" TRITON_BUILD_WITH_CLANG_LLD="1" pip wheel --no-deps --wheel-dir /wheels . \
 && rm -rf /src/triton

RUN --mount=type=secret,id=ca_cert --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=wheelhouse,target=/wheelhouse --mount=type=bind,source=images/scripts,target=/scripts --mount=type=cache,target=/root/.cache/ccache,id=ccache-triton_kernels \
    if [ -f /run/secrets/ca_cert ]; then export PIP_CERT=/run/secrets/ca_cert; fi \
 && export PIP_INDEX_URL="${PIP_INDEX_URL}" PIP_FIND_LINKS=/wheelhouse PIP_DISABLE_PIP_VERSION_CHECK=1 \
 && jobs="${MAX_JOBS:-$(awk -v g=4 '/MemAvailable/ {j=int($2/1048576/g); print (j<1?1:j)}' /proc/meminfo)}" \
 && jobs="$(( jobs < $(nproc) ? jobs : $(nproc) ))" \
 && git clone --filter=blob:none https://github.com/ROCm/triton /src/triton_kernels \
 && git -C /src/triton_kernels checkout --detach 285c85383660b2e4aac38d4947d23aa61dab3ce2 \
 && export SOURCE_DATE_EPOCH="$(git -C /src/triton_kernels log -1 --format=%ct)" CCACHE_DIR=/root/.cache/ccache \
      CMAKE_C_COMPILER_LAUNCHER=ccache CMAKE_CXX_COMPILER_LAUNCHER=ccache \
 && cd /src/triton_kernels/python/triton_kernels \
 && pip wheel --no-deps --wheel-dir /wheels . \
 && rm -rf /src/triton_kernels

RUN --mount=type=secret,id=ca_cert --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=wheelhouse,target=/wheelhouse --mount=type=bind,source=images/scripts,target=/scripts --mount=type=cache,target=/root/.cache/ccache,id=ccache-aiter \
    if [ -f /run/secrets/ca_cert ]; then export PIP_CERT=/run/secrets/ca_cert; fi \
 && export PIP_INDEX_URL="${PIP_INDEX_URL}" PIP_FIND_LINKS=/wheelhouse PIP_DISABLE_PIP_VERSION_CHECK=1 \
 && jobs="${MAX_JOBS:-$(awk -v g=4 '/MemAvailable/ {j=int($2/1048576/g); print (j<1?1:j)}' /proc/meminfo)}" \
 && jobs="$(( jobs < $(nproc) ? jobs : $(nproc) ))" \
 && git clone --filter=blob:none https://github.com/ROCm/aiter /src/aiter \
 && git -C /src/aiter checkout --detach e4048607a535ace3a2b51ded31b1c8c2d45c0879 \
 && export SOURCE_DATE_EPOCH="$(git -C /src/aiter log -1 --format=%ct)" CCACHE_DIR=/root/.cache/ccache \
      CMAKE_C_COMPILER_LAUNCHER=ccache CMAKE_CXX_COMPILER_LAUNCHER=ccache \
 && git -C /src/aiter submodule update --init --recursive --depth 1 \
 && pip install --no-deps /wheels/*.whl \
 && cd /src/aiter/. \
 && ENABLE_CK="${ENABLE_CK}" PREBUILD_TRITON="1" GPU_ARCHS="${GPU_ARCHS}" MAX_JOBS="$jobs" pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && rm -rf /src/aiter

RUN --mount=type=secret,id=ca_cert --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=wheelhouse,target=/wheelhouse --mount=type=bind,source=images/scripts,target=/scripts --mount=type=cache,target=/root/.cache/ccache,id=ccache-mori \
    if [ -f /run/secrets/ca_cert ]; then export PIP_CERT=/run/secrets/ca_cert; fi \
 && export PIP_INDEX_URL="${PIP_INDEX_URL}" PIP_FIND_LINKS=/wheelhouse PIP_DISABLE_PIP_VERSION_CHECK=1 \
 && jobs="${MAX_JOBS:-$(awk -v g=4 '/MemAvailable/ {j=int($2/1048576/g); print (j<1?1:j)}' /proc/meminfo)}" \
 && jobs="$(( jobs < $(nproc) ? jobs : $(nproc) ))" \
 && git clone --filter=blob:none https://github.com/ROCm/mori /src/mori \
 && git -C /src/mori checkout --detach 624002c897a30928ec04c14fc167bf2b8a93f6ce \
 && export SOURCE_DATE_EPOCH="$(git -C /src/mori log -1 --format=%ct)" CCACHE_DIR=/root/.cache/ccache \
      CMAKE_C_COMPILER_LAUNCHER=ccache CMAKE_CXX_COMPILER_LAUNCHER=ccache \
 && git -C /src/mori submodule update --init --recursive --depth 1 \
 && pip install --no-deps /wheels/*.whl \
 && cd /src/mori/. \
 && GPU_ARCHS="${GPU_ARCHS}" MAX_JOBS="$jobs" pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
 && rm -rf /src/mori

RUN --mount=type=secret,id=ca_cert --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=wheelhouse,target=/wheelhouse --mount=type=bind,source=images/scripts,target=/scripts \
    if [ -f /run/secrets/ca_cert ]; then export PIP_CERT=/run/secrets/ca_cert; fi \
 && export PIP_INDEX_URL="${PIP_INDEX_URL}" PIP_FIND_LINKS=/wheelhouse PIP_DISABLE_PIP_VERSION_CHECK=1 \
 && pip download --no-deps --only-binary=:all: --dest /wheels flydsl==0.5.0 \
 && python /scripts/bundle.py check-hash /wheels flydsl 32725cab43e62929e61c034389fb44e97f036cd989bd0c105c69cdcb14d211b1

RUN --mount=type=secret,id=ca_cert --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=wheelhouse,target=/wheelhouse --mount=type=bind,source=images/scripts,target=/scripts --mount=type=bind,source=engine,target=/src/engine,rw \
    if [ -f /run/secrets/ca_cert ]; then export PIP_CERT=/run/secrets/ca_cert; fi \
 && export PIP_INDEX_URL="${PIP_INDEX_URL}" PIP_FIND_LINKS=/wheelhouse PIP_DISABLE_PIP_VERSION_CHECK=1 \
 && SOURCE_DATE_EPOCH=315532800 pip wheel --no-deps --wheel-dir /wheels /src/engine
RUN --mount=type=secret,id=ca_cert --mount=type=cache,target=/root/.cache/pip \
    --mount=type=bind,source=wheelhouse,target=/wheelhouse --mount=type=bind,source=images/scripts,target=/scripts \
    if [ -f /run/secrets/ca_cert ]; then export PIP_CERT=/run/secrets/ca_cert; fi \
 && export PIP_INDEX_URL="${PIP_INDEX_URL}" PIP_FIND_LINKS=/wheelhouse PIP_DISABLE_PIP_VERSION_CHECK=1 \
 && pip install --find-links /wheels /wheels/*.whl \
 && mkdir -p /etc/atom
RUN useradd --create-home --uid 1000 --user-group atom
LABEL org.opencontainers.image.title="atom-rocm-gfx950-full" \
      org.opencontainers.image.description="ROCm 7.2.1, gfx942 + gfx950, CK on: aiter CK MoE/attention, Triton paths, mori, FlyDSL" \
      org.opencontainers.image.source="https://github.com/atom-build/atom-build" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="rocm/dev-ubuntu-24.04:7.2.1-complete@sha256:3db551c4e1229aac1857ac44fcb6141bb749f41348eb572452f11279153c13c3" \
      ai.atom.recipe="rocm-gfx950" \
      ai.atom.recipe.sha256="9c98aa123597ac93dc0d8641aa09cd77da5847d60b84547088200bb4cb2fc709" \
      ai.atom.archs="gfx942,gfx950" \
      ai.atom.enable_ck="1"
ENV PATH=/opt/atom/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ATOM_BUILD_MANIFEST=/etc/atom/build.json
USER 1000:1000
WORKDIR /home/atom
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
ENTRYPOINT ["atom", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--model", "/model"]
