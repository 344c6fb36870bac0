#!/usr/bin/env bash
# Configures and builds into build/ (Release, Ninja, ccache when present). Extra arguments go to CMake.
set -euo pipefail
cd "$(dirname "$0")/.."
# The CUDA kernels of the INT2 runtime build when nvcc is found (OSCAR_CUDA=AUTO); CUDA lives outside PATH
# on some machines.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
ninja -C build
