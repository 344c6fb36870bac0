#!/usr/bin/env bash
# Every GPU check of the toolchain in one run, for a GPU machine with CUDA, CMake, Ninja and Python's torch
# but no apt or network (the `device` machine). Needs .gpu/bundle.tar.xz from scripts/gpu-bundle.sh (this
# machine's Debian dependencies, the GoogleTest sources, the bundled models and text).
#   1. scripts/gpu-check.sh: the runtime alone: CUDA tests (bit-exact against the CPU reference) and the
#      decode benchmark (issue 4; the per-row baselines' CUDA tests run here too, issue 7).
#   2. The whole toolchain against the torch package's LibTorch with OSCAR_CUDA=ON: the scoring tests (the
#      CUDA one among them), then oscar-verify --device cuda against --device cpu on a random head_dim-64
#      Llama (the bundled models' head dims, 8 and 16, are below the CUDA kernels' 64), compared by
#      scripts/compare-verify-reports.py (issues 5 and 7); then oscar-calibrate --device cuda against
#      --device cpu on TinyStories-656K, compared by oscar-zoo diff (issue 3). FULL_CTEST=1 then builds
#      everything and runs the whole test suite against that LibTorch.
#
#   scripts/gpu-full-check.sh [--configure-only] [work-dir]      (default /tmp/oscar-gpu)
#
# --configure-only unpacks the bundle and configures the whole toolchain against it, then stops (CI's
# gpu_bundle test does this on a machine without a GPU). BUNDLE overrides the tarball's path.
# PROFILE_DECODE=1 adds an ncu profile of the decode kernels at 131072 tokens (ncu-decode.txt): both INT2
# kernels (CUDA cores, tensor cores) and the bf16 decode, 4 decodes each.
# Logs and reports go to work-dir/logs, packed into $OUT/gpu-logs.tar.gz when OUT is set. PYTHON (default
# python3) is the Python whose torch package gives LibTorch; TORCH_CMAKE_PREFIX and TORCH_LIB_DIR override it.
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
configure_only=0
if [[ "${1:-}" == "--configure-only" ]]; then configure_only=1; shift; fi
work="${1:-/tmp/oscar-gpu}"
tarball="${BUNDLE:-$root/.gpu/bundle.tar.xz}"
logs="$work/logs"
python="${PYTHON:-python3}"
bundle="$work/bundle"
sysroot="$bundle/sysroot"
multiarch=x86_64-linux-gnu
jobs="$(nproc 2>/dev/null || echo 8)"
status=0
mkdir -p "$work" "$logs"
started=$SECONDS
stamp() { echo "== [$((SECONDS - started)) s] $*"; }

stamp "unpack $tarball"
rm -rf "$bundle"
"$python" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])" "$tarball" "$bundle" || exit 2
# Tests read ../shared/data beside the checkout.
if [[ ! -e "$root/../shared/data" ]]; then mkdir -p "$root/../shared" && ln -s "$bundle/data" "$root/../shared/data"; fi
data="$root/../shared/data"

stamp "environment"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader || true
"$python" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cxx11 abi', torch.compiled_with_cxx11_abi())"
cmake --version | head -1; nvcc --version 2>/dev/null | tail -1 || /usr/local/cuda/bin/nvcc --version | tail -1

if [[ -z "${SKIP_RUNTIME_CHECK:-}" && $configure_only -eq 0 ]]; then
  stamp "1. runtime alone"
  GTEST_SOURCE_DIR="$bundle/googletest" "$root/scripts/gpu-check.sh" "$work/build-runtime" 2>&1 | tee "$logs/runtime.log"
  [[ ${PIPESTATUS[0]} -eq 0 ]] || { status=1; echo "gpu-full-check: runtime check failed"; }
fi

if [[ -n "${PROFILE_DECODE:-}" && -x "$work/build-runtime/lib/runtime/cuda/bench_runtime_cuda" ]] && command -v ncu >/dev/null; then
  stamp "1b. ncu: decode kernels at 131072 tokens"
  ncu --clock-control none --kernel-name regex:decode -c 32 --section SpeedOfLight --section Occupancy \
    --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis \
    "$work/build-runtime/lib/runtime/cuda/bench_runtime_cuda" 1 131072 > "$logs/ncu-decode.txt" 2>&1
  # The first profile of each kernel and grid (the decodes repeat); a section starts at its "name (grid)x(block)" line.
  awk '/^  [A-Za-z_].*\([0-9]+, [0-9]+, [0-9]+\)x\(/ { name = $1 $2 $3 $4; show = !(name in seen); seen[name] = 1 } show' \
    "$logs/ncu-decode.txt" |
    grep -E "decode_|Duration|Memory Throughput|DRAM Throughput|Compute \(SM\)|Registers Per|Achieved Occupancy|Theoretical Occupancy|Block Limit|Grid Size|Stall|Issued Ipc|Warp Cycles Per Issued" | head -150
fi

stamp "2. whole toolchain: configure"
torch_cmake="${TORCH_CMAKE_PREFIX:-$("$python" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')}"
torch_lib="${TORCH_LIB_DIR:-$("$python" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')}"
libs="$sysroot/usr/lib/$multiarch"
export PATH="$bundle/bin:$PATH"
export PKG_CONFIG_SYSROOT_DIR="$sysroot" PKG_CONFIG_LIBDIR="$libs/pkgconfig:$sysroot/usr/share/pkgconfig"
nvcc_path="$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)"
build="$work/build-full"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DOSCAR_CUDA=ON -DCMAKE_CUDA_COMPILER="$nvcc_path" \
  -DCMAKE_PREFIX_PATH="$sysroot/usr;$torch_cmake" -DOPENSSL_ROOT_DIR="$sysroot/usr" -DZLIB_ROOT="$sysroot/usr" \
  -DHDF5_C_COMPILER_EXECUTABLE=HDF5_C_COMPILER_EXECUTABLE-NOTFOUND \
  -DHDF5_CXX_COMPILER_EXECUTABLE=HDF5_CXX_COMPILER_EXECUTABLE-NOTFOUND \
  -DCMAKE_EXE_LINKER_FLAGS="-Wl,-rpath-link,$libs:$libs/hdf5/serial:$torch_lib" \
  -DOSCAR_GTEST_SOURCE_DIR="$bundle/googletest" -DCMAKE_GTEST_DISCOVER_TESTS_DISCOVERY_MODE=PRE_TEST \
  > "$logs/configure.log" 2>&1
configured=$?
grep -E "OSCAR|Torch|CUDA|Found|error|Error" "$logs/configure.log" | head -40
if [[ $configured -ne 0 ]]; then
  tail -40 "$logs/configure.log"
  stamp "configure failed"; [[ -n "${OUT:-}" ]] && tar -C "$work" -czf "$OUT/gpu-logs.tar.gz" logs; exit 1
fi

if [[ $configure_only -eq 1 ]]; then stamp "configured in $build"; exit 0; fi

stamp "2. whole toolchain: build"
export LD_LIBRARY_PATH="$libs:$libs/openblas-pthread:$libs/hdf5/serial:$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
if ! ninja -C "$build" -j "$jobs" oscar-verify test_verify test_runtime_cuda > "$logs/build.log" 2>&1; then
  grep -B2 -A12 -m5 "error" "$logs/build.log" | head -80
  stamp "build failed"; [[ -n "${OUT:-}" ]] && tar -C "$work" -czf "$OUT/gpu-logs.tar.gz" logs; exit 1
fi

ldd "$build/apps/oscar-verify" | grep "not found" && status=1

stamp "2a. CUDA scoring tests"
"$build/tests/test_verify" --gtest_filter='VerifyScoring*' 2>&1 | tee "$logs/test_verify.log" | grep -E "^\[|Δ|SKIP|Failure|Expected|Which|actual" | grep -v "^\[ RUN\|^\[       OK\|^\[----" || true
[[ ${PIPESTATUS[0]} -eq 0 ]] || status=1
if grep -q "SKIPPED" "$logs/test_verify.log"; then echo "gpu-full-check: a CUDA test skipped on a GPU machine"; status=1; fi

stamp "2b. oscar-verify --device cpu vs cuda"
# The CUDA kernels decode head_dim 64, 128 or 256; the bundled models have 8 and 16. So the comparison runs on
# a random Llama with head_dim 64 and the 656K model's tokenizer, written by the GPU machine's transformers
# (seed 0). A random model's distributions are near uniform, so KL is small; the point is CPU = CUDA.
model="$work/llama-hd64"
if "$python" - "$model" "$data/models/tinystories-656k" > "$logs/llama-hd64.txt" 2>&1 <<'PY'
import shutil, sys
from pathlib import Path
import torch, transformers
out, tokenizer = Path(sys.argv[1]), Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
    shutil.copy(tokenizer / name, out / name)
torch.manual_seed(0)
config = transformers.LlamaConfig(hidden_size=256, intermediate_size=512, num_attention_heads=4, num_key_value_heads=2,
                                  head_dim=64, num_hidden_layers=2, vocab_size=2048, max_position_embeddings=512,
                                  tie_word_embeddings=True, bos_token_id=1, eos_token_id=2)
transformers.LlamaForCausalLM(config).save_pretrained(out)
PY
then
  # cuda-tc: the CUDA runtime with its tensor-core INT2 decode kernel (--cuda-decode tensor-cores). The CUDA
  # runs first and are compared with each other at once: the CPU run takes minutes and may meet the time limit.
  for run in cuda-tc cuda cpu; do
    begin=$SECONDS
    device=${run%-tc}
    kernel=cuda-cores; [[ $run == *-tc ]] && kernel=tensor-cores
    "$build/apps/oscar-verify" --model "$model" --quiet --methods fp,naive,hadamard,naive-sym,turboquant-k3v3 \
      --sink 8 --recent 32 --seed 0 --device "$device" --cuda-decode "$kernel" \
      --eval "$data/text/tinystories_val.txt" --skip-tokens 25000 --max-tokens 2048 \
      --eval "$data/eval/arc_challenge_test.jsonl" --limit 40 \
      --report "$logs/verify-hd64-$run.json" > "$logs/verify-hd64-$run.txt" 2>&1
    rc=$?
    echo "oscar-verify llama-hd64 --device $device --cuda-decode $kernel: exit $rc, $((SECONDS - begin)) s"
    cat "$logs/verify-hd64-$run.txt"
    [[ $rc -le 1 ]] || status=1
    case $run in
      cuda) pairs=("cuda cuda-tc") ;;
      cpu) pairs=("cpu cuda" "cpu cuda-tc") ;;
      *) pairs=() ;;
    esac
    for pair in "${pairs[@]}"; do
      read -r a b <<< "$pair"
      "$python" "$root/scripts/compare-verify-reports.py" "$logs/verify-hd64-$a.json" "$logs/verify-hd64-$b.json" \
        > "$logs/compare-hd64-$a-$b.txt" 2>&1 || status=1
      echo "== $a vs $b"; cat "$logs/compare-hd64-$a-$b.txt"
    done
  done
else
  tail -3 "$logs/llama-hd64.txt"; echo "gpu-full-check: could not write the head_dim-64 model"; status=1
fi

stamp "2c. oscar-calibrate --device cpu vs cuda (TinyStories-656K)"
for device in cpu cuda; do
  rm -rf "$work/calibrate-$device"
  begin=$SECONDS
  "$build/apps/oscar-calibrate" --config "$root/configs/tinystories-656k.toml" --device "$device" \
    --out "$work/calibrate-$device" -q > "$logs/calibrate-$device.txt" 2>&1
  rc=$?
  echo "oscar-calibrate --device $device: exit $rc, $((SECONDS - begin)) s"
  [[ $rc -eq 0 ]] || { tail -3 "$logs/calibrate-$device.txt"; status=1; }
done
if "$build/apps/oscar-zoo" diff --json "$work"/calibrate-cpu/seq* "$work"/calibrate-cuda/seq* > "$logs/calibrate-diff.json"; then
  # Same data, float32 forwards on two devices, covariances summed in float64: the eigenbases' top-k subspaces
  # must coincide (overlap ≥ 0.99) and the eigenvalues agree to 1e-3 relative.
  "$python" - "$logs/calibrate-diff.json" <<'PY' || status=1
import json, sys
text = open(sys.argv[1]).read()
decoder, sets, at = json.JSONDecoder(), [], 0
while at < len(text):
    if text[at].isspace():
        at += 1
        continue
    value, at = decoder.raw_decode(text, at)
    sets.append(value)
bad = 0
for entry in sets:
    for layer in entry["layers"]:
        ok = min(layer["overlaps"]) >= 0.99 and layer["eigenvalue_difference"] <= 1e-3
        bad += not ok
        print(f"{entry['set']:6s} layer {layer['layer_id']} head {layer['head']}: overlaps "
              f"{' '.join(f'{o:.6f}' for o in layer['overlaps'])}, max |dλ|/|λ| {layer['eigenvalue_difference']:.2e}"
              f"{'' if ok else '  FAIL'}")
print("calibration cpu vs cuda:", "ok" if bad == 0 else f"{bad} layers differ")
sys.exit(1 if bad else 0)
PY
else
  status=1
fi

if [[ -n "${FULL_CTEST:-}" ]]; then
  stamp "2d. every test of the suite against LibTorch $("$python" -c 'import torch; print(torch.__version__)')"
  ninja -C "$build" -j "$jobs" > "$logs/build-all.log" 2>&1 || { tail -20 "$logs/build-all.log"; status=1; }
  (cd "$build" && ctest -j "$jobs" -E "verify_bundled_quick|compare_methods_quick" > "$logs/ctest.log" 2>&1) || status=1
  grep -E "tests passed|Failed|\*\*\*" "$logs/ctest.log" | head -40
fi

stamp "done, status $status"
[[ -n "${OUT:-}" ]] && tar -C "$work" -czf "$OUT/gpu-logs.tar.gz" logs
exit "$status"
