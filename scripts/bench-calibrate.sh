#!/usr/bin/env bash
# Benchmarks oscar-calibrate against the in-memory Python float64 reference on a synthetic dump with
# Qwen3-8B attention geometry (Hq 32, Hkv 8, d 128, bf16, SGLang layout).
#
#   scripts/bench-calibrate.sh [--tokens 20000] [--layers 4] [--large-tokens 100000] [--large-layers 2]
#                              [--threads N] [--with-reference-at-100k] [--skip-large] [--no-check]
#                              [--build-dir DIR] [--workdir DIR] [--keep]
#
# Steps: build oscar-calibrate if needed (in --build-dir, default build/: ninja there when it is
# configured, else scripts/build.sh when present, else cmake -S . -B build -G Ninja
# -DCMAKE_BUILD_TYPE=Release); generate the dump with tests/python/make_synthetic_dump.py (chunks of
# ~2500 tokens); run
#   oscar-calibrate --from-dump D --out O --method qqt_sst --composition r_h_pbr --threads N
# and scripts/bench_reference.py on it, each under scripts/peak_rss.py (wall time and the child's peak RSS
# from os.wait4); check our rotations with tests/python/check_rotations.py; then the same for ours alone at
# --large-tokens tokens per layer (the reference too with --with-reference-at-100k: it needs ~8.5 GB).
# Prints a markdown table for docs/PERFORMANCE.md at the end. Per-layer time = wall time / layers, process
# start-up included (the reference's own per-layer lines, without the torch import, are shown as well).
# Needs /usr/bin/python3 with torch (Debian python).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY=/usr/bin/python3
TOKENS=20000
LAYERS=4
LARGE_TOKENS=100000
LARGE_LAYERS=2
THREADS="$(nproc)"
WITH_REF_LARGE=0
SKIP_LARGE=0
CHECK=1
KEEP=0
WORKDIR=""
BUILD="$ROOT/build"
CHUNK_TOKENS=2500

usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}"; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --tokens) TOKENS="$2"; shift 2 ;;
    --layers) LAYERS="$2"; shift 2 ;;
    --large-tokens) LARGE_TOKENS="$2"; shift 2 ;;
    --large-layers) LARGE_LAYERS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --with-reference-at-100k) WITH_REF_LARGE=1; shift ;;
    --skip-large) SKIP_LARGE=1; shift ;;
    --no-check) CHECK=0; shift ;;
    --workdir) WORKDIR="$2"; shift 2 ;;
    --build-dir) BUILD="$(cd "$(dirname "$2")" && pwd)/$(basename "$2")"; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench-calibrate.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
  esac
done

if ! "$PY" -c 'import torch' 2>/dev/null; then
  echo "bench-calibrate.sh: $PY cannot import torch (the Debian python with torch is required)" >&2
  exit 1
fi

# ------------------------------------------------------------------------------------------------ build
if [[ -f "$BUILD/build.ninja" ]]; then
  ninja -C "$BUILD" oscar-calibrate >/dev/null
elif [[ "$BUILD" == "$ROOT/build" && -x "$ROOT/scripts/build.sh" ]]; then
  "$ROOT/scripts/build.sh" >/dev/null
else
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
  ninja -C "$BUILD" oscar-calibrate >/dev/null
fi
BIN="$BUILD/apps/oscar-calibrate"
[[ -x "$BIN" ]] || { echo "bench-calibrate.sh: $BIN was not built" >&2; exit 1; }
BUILD_TYPE="$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$BUILD/CMakeCache.txt" 2>/dev/null || true)"
if [[ "$BUILD_TYPE" != "Release" && "$BUILD_TYPE" != "RelWithDebInfo" ]]; then
  echo "bench-calibrate.sh: warning: $BUILD is a '${BUILD_TYPE:-unset}' build; timings may not be representative" >&2
fi

# ----------------------------------------------------------------------------------------------- workdir
if [[ -z "$WORKDIR" ]]; then
  WORKDIR="$(mktemp -d "${TMPDIR:-/tmp}/oscar-bench.XXXXXX")"
else
  mkdir -p "$WORKDIR"
fi
cleanup() {
  if [[ $KEEP -eq 1 ]]; then
    echo "bench-calibrate.sh: kept $WORKDIR" >&2
  else
    rm -rf "$WORKDIR"
  fi
}
trap cleanup EXIT

# make_dump DIR TOKENS LAYERS: chunks of ~CHUNK_TOKENS; make_synthetic_dump.py gives chunk i (1-based)
# tokens_per_chunk + 3*i tokens, so pick tokens_per_chunk to land on TOKENS (within a few tokens).
make_dump() {
  local dir="$1" tokens="$2" layers="$3"
  local chunks=$(( (tokens + CHUNK_TOKENS - 1) / CHUNK_TOKENS ))
  if (( chunks < 1 )); then chunks=1; fi
  local per_chunk=$(( (tokens - 3 * chunks * (chunks + 1) / 2) / chunks ))
  if (( per_chunk < 1 )); then per_chunk=1; fi
  "$PY" "$ROOT/tests/python/make_synthetic_dump.py" "$dir" --layers "$layers" --q-heads 32 --kv-heads 8 \
    --head-dim 128 --dtype bfloat16 --chunks "$chunks" --tokens-per-chunk "$per_chunk" --seed 1
}

# Tokens per layer actually in the dump (chunk 0 excluded), from layer 0's k chunk files.
dump_tokens() {
  "$PY" - "$1" <<'EOF'
import os, sys, torch
d = os.path.join(sys.argv[1], "layer_0", "k")
print(sum(torch.load(os.path.join(d, f)).shape[0] for f in os.listdir(d) if f.endswith(".pt") and f != "0.pt"))
EOF
}

RESULTS="$WORKDIR/results.tsv"   # label tokens layers wall_s peak_kib ref_inner_s
: > "$RESULTS"

# run_tool LABEL TOKENS LAYERS JSON -- COMMAND...
run_tool() {
  local label="$1" tokens="$2" layers="$3" json="$4"; shift 5
  local log="$WORKDIR/$label.log"
  echo "== $label: $*" >&2
  if ! "$PY" "$ROOT/scripts/peak_rss.py" --label "$label" --json "$json" -- "$@" >"$log" 2>&1; then
    echo "bench-calibrate.sh: $label failed; log:" >&2
    tail -n 20 "$log" >&2
    exit 1
  fi
  tail -n 1 "$log" >&2
  local inner
  inner="$(sed -n 's/^total \([0-9.]*\) s over.*/\1/p' "$log")"
  "$PY" - "$json" "$label" "$tokens" "$layers" "${inner:--}" >>"$RESULTS" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
print("\t".join([sys.argv[2], sys.argv[3], sys.argv[4], f"{r['wall_s']:.3f}", str(r["peak_rss_kib"]), sys.argv[5]]))
EOF
}

bench_size() {
  local tag="$1" tokens="$2" layers="$3" with_ref="$4"
  local dump="$WORKDIR/dump_$tag"
  echo "== generating $tag dump: ~$tokens tokens/layer, $layers layers, Qwen3-8B geometry (bf16)" >&2
  local start=$SECONDS
  make_dump "$dump" "$tokens" "$layers"
  local actual
  actual="$(dump_tokens "$dump")"
  echo "   $actual tokens/layer, $(du -sh "$dump" | cut -f1) on disk, $((SECONDS - start)) s" >&2
  run_tool "ours_$tag" "$actual" "$layers" "$WORKDIR/ours_$tag.json" -- \
    "$BIN" --from-dump "$dump" --out "$WORKDIR/out_ours_$tag" --method qqt_sst --composition r_h_pbr \
    --threads "$THREADS" -q
  if [[ $with_ref -eq 1 ]]; then
    run_tool "reference_$tag" "$actual" "$layers" "$WORKDIR/reference_$tag.json" -- \
      "$PY" "$ROOT/scripts/bench_reference.py" --dump "$dump" --out "$WORKDIR/out_ref_$tag" \
      --method qqt_sst --composition r_h_pbr
  fi
  if [[ $CHECK -eq 1 ]]; then
    echo "== checking our $tag rotations against Python" >&2
    "$PY" "$ROOT/tests/python/check_rotations.py" --dump "$dump" --out "$WORKDIR/out_ours_$tag" \
      --method qqt_sst --composition r_h_pbr >&2
  fi
  rm -rf "$dump"   # the large dump is ~1.2 GB per layer
}

bench_size small "$TOKENS" "$LAYERS" 1
if [[ $SKIP_LARGE -eq 0 ]]; then
  bench_size large "$LARGE_TOKENS" "$LARGE_LAYERS" "$WITH_REF_LARGE"
fi

# ------------------------------------------------------------------------------------------------ report
"$PY" - "$RESULTS" "$THREADS" "$(nproc)" "$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)" \
  "${BUILD_TYPE:-unset}" <<'EOF'
import sys
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1]) if line.strip()]
threads, cores, commit, build_type = sys.argv[2:6]
by_label = {r[0]: r for r in rows}
print()
print(f"Synthetic dump, Qwen3-8B attention geometry (Hq 32, Hkv 8, d 128, bf16, SGLang layout), "
      f"method qqt_sst, composition r_h_pbr; {cores} cores, oscar-calibrate --threads {threads} "
      f"({build_type} build, commit {commit}); reference = in-memory float64 torch "
      f"(scripts/bench_reference.py). Per-layer time = process wall time / layers.")
print()
print("| tool | tokens/layer | layers | wall (s) | per layer (s) | peak RSS (MiB) | speed-up |")
print("|---|---:|---:|---:|---:|---:|---:|")
for label, tokens, layers, wall, peak_kib, inner in rows:
    tag = label.split("_", 1)[1]
    per_layer = float(wall) / int(layers)
    tool = "oscar-calibrate" if label.startswith("ours") else "Python reference"
    speedup = ""
    if label.startswith("ours") and f"reference_{tag}" in by_label:
        ref = by_label[f"reference_{tag}"]
        speedup = f"{(float(ref[3]) / int(ref[2])) / per_layer:.1f}x"
    if inner != "-":
        tool += f" (compute {float(inner) / int(layers):.2f} s/layer)"
    print(f"| {tool} | {tokens} | {layers} | {float(wall):.2f} | {per_layer:.2f} | {int(peak_kib) / 1024:.0f} | "
          f"{speedup} |")
EOF
