#!/usr/bin/env bash
# GPU check of the INT2 runtime on a machine with only CUDA, CMake, Ninja and (optionally) the GoogleTest
# sources — no Eigen, HDF5, spdlog, network or apt: builds the runtime alone (OSCAR_RUNTIME_ONLY) with
# OSCAR_CUDA=ON, runs the CUDA tests (bit-exact codes/scales/zeros against the CPU
# reference; attention within 1e-3 of dense), then the decode benchmark.
#
#   scripts/gpu-check.sh [build-dir]          (default build-gpu; BENCH_ARGS="50 4096 32768 100000 131072")
#
# GoogleTest is built from $GTEST_SOURCE_DIR (default /usr/src/googletest) when that tree exists; otherwise
# the tests are not built and only the benchmark runs.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${1:-$root/build-gpu}"
gtest_src="${GTEST_SOURCE_DIR:-/usr/src/googletest}"
jobs="$(nproc 2>/dev/null || echo 4)"

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

cmake_args=(-S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DOSCAR_RUNTIME_ONLY=ON -DOSCAR_CUDA=ON)
[[ -x /usr/local/cuda/bin/nvcc ]] && ! command -v nvcc >/dev/null && cmake_args+=(-DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc)
targets=(bench_runtime_cuda)
if [[ -f "$gtest_src/CMakeLists.txt" ]]; then
  cmake_args+=(-DOSCAR_BUILD_TESTS=ON -DOSCAR_GTEST_SOURCE_DIR="$gtest_src")
  targets+=(test_runtime test_runtime_cuda)
else
  echo "gpu-check: no GoogleTest sources at $gtest_src: tests not built, benchmark only"
  cmake_args+=(-DOSCAR_BUILD_TESTS=OFF)
fi

cmake "${cmake_args[@]}"
ninja -C "$build" -j "$jobs" "${targets[@]}"

status=0
for t in test_runtime test_runtime_cuda; do
  if [[ -x "$build/tests/$t" ]]; then
    echo "== $t"
    "$build/tests/$t" || status=1
  fi
done
echo "== bench_runtime_cuda ${BENCH_ARGS:-}"
# shellcheck disable=SC2086
"$build/lib/runtime/cuda/bench_runtime_cuda" ${BENCH_ARGS:-} || status=1
exit "$status"
