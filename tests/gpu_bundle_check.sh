#!/usr/bin/env bash
# CI's check of the GPU machine's bundle (scripts/gpu-bundle.sh): every library link in it resolves inside the
# bundle, and the whole toolchain configures against it (scripts/gpu-full-check.sh --configure-only) with
# every dependency but LibTorch found in the bundle, none on this machine. Fails when a dependency added to
# CMakeLists.txt is missing from the bundle.
#   tests/gpu_bundle_check.sh WORK_DIR
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$1"
rm -rf "$work"
"$root/scripts/gpu-bundle.sh" "$work/out" > /dev/null

dangling="$(find "$work/out/tree/sysroot" -xtype l)"
[[ -z "$dangling" ]] || { echo "gpu_bundle: dangling links in the sysroot:"; echo "$dangling"; exit 1; }

BUNDLE="$work/out/bundle.tar.xz" PYTHON=/usr/bin/python3 TORCH_CMAKE_PREFIX=/usr/lib/x86_64-linux-gnu/cmake \
  TORCH_LIB_DIR=/usr/lib/x86_64-linux-gnu PATH="/usr/local/cuda/bin:$PATH" \
  "$root/scripts/gpu-full-check.sh" --configure-only "$work/check" > "$work/check.log" 2>&1 ||
  { tail -30 "$work/check.log"; exit 1; }

cache="$work/check/build-full/CMakeCache.txt"
sysroot="$work/check/bundle/sysroot"
failed=0
for variable in Eigen3_DIR spdlog_DIR fmt_DIR CLI11_DIR nlohmann_json_DIR HDF5_C_INCLUDE_DIR HDF5_hdf5_LIBRARY_RELEASE \
                HDF5_hdf5_cpp_LIBRARY_RELEASE ZLIB_LIBRARY_RELEASE OPENSSL_CRYPTO_LIBRARY OPENBLAS_LIBRARY \
                OPENBLAS_INCLUDE_DIR PCRE2_INCLUDEDIR UTF8PROC_INCLUDEDIR; do
  value="$(grep -m1 "^$variable:" "$cache" | cut -d= -f2- || true)"
  if [[ "$value" != "$sysroot"/* ]]; then
    echo "gpu_bundle: $variable is '$value', not inside the bundle's sysroot"
    failed=1
  fi
done
[[ $failed -eq 0 ]] && echo "gpu_bundle: $(du -h "$work/out/bundle.tar.xz" | cut -f1) bundle; every dependency configured from it"
exit "$failed"
