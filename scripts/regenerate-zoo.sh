#!/usr/bin/env bash
# Regenerates the RotationZoo entries: for every configs/*.toml with a [zoo] table, calibrate (oscar-calibrate
# --config), verify (oscar-verify with the table's arguments and budget), convert to the rotation GGUF and write
# the manifest, into zoo/<entry>/<tag>/:
#   k_rotation_*.pt  v_rotation_*.pt  rotations.gguf  calibration.json  verify.json  verify.md  manifest.json
#
#   scripts/regenerate-zoo.sh [--check] [--no-build] [CONFIG...]
#     --check     regenerate into build/zoo-staging only and fail when any file differs from the committed
#                 manifest (entries must be bit-reproducible) or verification is over budget (what CI runs)
#     --no-build  use the binaries in build/ as they are
# Every entry is staged under the same path (build/zoo-staging/<entry>), so the paths the records hold are the
# same in both modes. Threads and CPU kernels are pinned so that the bits do not depend on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."
check=0 build=1 configs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --check) check=1 ;;
    --no-build) build=0 ;;
    -*) echo "regenerate-zoo.sh: unknown option $1" >&2; exit 2 ;;
    *) configs+=("$1") ;;
  esac
  shift
done
if [ "$build" = 1 ]; then
  scripts/setup.sh
  scripts/build.sh
fi
if [ ${#configs[@]} -eq 0 ]; then
  mapfile -t configs < <(grep -l '^\[zoo\]' configs/*.toml | sort)
fi
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell} ATEN_CPU_CAPABILITY=${ATEN_CPU_CAPABILITY:-avx2}
export ONEDNN_MAX_CPU_ISA=${ONEDNN_MAX_CPU_ISA:-AVX2} DNNL_MAX_CPU_ISA=${DNNL_MAX_CPU_ISA:-AVX2}

# toml KEY...: the config's values (top level, or zoo.entry / zoo.verify), one per line, lists one item per line.
toml() {
  /usr/bin/python3 - "$config" "$@" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    table = tomllib.load(f)
for key in sys.argv[2:]:
    value = table
    for part in key.split("."):
        value = value.get(part, {}) if isinstance(value, dict) else {}
    for item in (value if isinstance(value, list) else [value] if value != {} else []):
        print(item)
PY
}

failed=0
for config in "${configs[@]}"; do
  entry=$(toml zoo.entry)
  [ -n "$entry" ] || { echo "regenerate-zoo: $config: no [zoo] entry name" >&2; exit 2; }
  mapfile -t verify_args < <(toml zoo.verify)
  model=$(toml model)
  tokenizer=$(toml tokenizer)
  stage="build/zoo-staging/$entry"
  rm -rf "$stage"
  echo "== $entry ($config)"
  build/apps/oscar-calibrate --config "$config" --out "$stage" --threads 2 -q
  tagdir=$(ls -d "$stage"/seq*/ | head -1)
  tagdir=${tagdir%/}
  tag=$(basename "$tagdir")
  status=0
  build/apps/oscar-verify --model "$model" ${tokenizer:+--tokenizer "$tokenizer"} --rotations "$tagdir" --threads 2 -q \
    "${verify_args[@]}" --report "$tagdir/verify.json" --markdown "$tagdir/verify.md" || status=$?
  if [ "$status" -ne 0 ]; then
    echo "regenerate-zoo: $entry: oscar-verify exited $status (1: over budget)" >&2
    failed=1
    continue
  fi
  build/apps/oscar-zoo convert "$tagdir" "$tagdir/rotations.gguf" >/dev/null
  build/apps/oscar-zoo manifest "$tagdir" >/dev/null
  if [ "$check" = 1 ]; then
    committed="zoo/$entry/$tag/manifest.json"
    if [ ! -f "$committed" ]; then
      echo "regenerate-zoo: $committed is not committed (run scripts/regenerate-zoo.sh)" >&2
      failed=1
    elif ! build/apps/oscar-zoo manifest "$tagdir" --expect "$committed"; then
      failed=1
    fi
  else
    rm -rf "zoo/$entry/$tag"
    mkdir -p "zoo/$entry"
    cp -r "$tagdir" "zoo/$entry/$tag"
    echo "wrote zoo/$entry/$tag"
  fi
done
exit "$failed"
