#!/usr/bin/env bash
# The main job on bundled data: installs, builds, calibrates OSCAR rotations from a synthetic SGLang-layout
# Q/K/V dump written by Python (Qwen3-like geometry, small; the result is checked from PyTorch) and from the
# bundled stories260K model directly.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "== synthetic dump (4 layers, Hq 16, Hkv 4, d 128, bf16) in $work/dump"
/usr/bin/python3 tests/python/make_synthetic_dump.py "$work/dump" --layers 4 --q-heads 16 --kv-heads 4 \
  --head-dim 128 --chunks 4 --tokens-per-chunk 500 --dtype bfloat16
echo "== oscar-calibrate (qqt_sst, r_h_pbr)"
build/apps/oscar-calibrate --from-dump "$work/dump" --out "$work/rotations" --method qqt_sst --composition r_h_pbr
ls -l "$work/rotations"
grep -E '"(tag|tokens|prompts)"' "$work/rotations/calibration.json"
echo "== PyTorch reads the rotations (weights_only=True) and checks them against its own covariances"
/usr/bin/python3 tests/python/check_rotations.py --dump "$work/dump" --out "$work/rotations" \
  --method qqt_sst --composition r_h_pbr
echo "== calibrating the bundled stories260K model directly (llama2.c, capture -> accumulators, no dump)"
data=../shared/data
build/apps/oscar-calibrate --model "$data/models/stories260K/stories260K.bin" \
  --tokenizer "$data/models/stories260K/tok512.bin" --data "$data/text/tinystories_sample.txt" \
  --tokens 2000 --seq-len 128 --out "$work/stories260K"
grep -E '"(tag|tokens|prompts)"' "$work/stories260K/calibration.json"
echo "== the real RotationZoo files load too"
/usr/bin/python3 - <<'PY'
import torch
for name in ("k_rotation_qqt_r_h_pbr", "v_rotation_sst_r_h_pbr"):
    z = torch.load(f"../shared/data/rotationzoo/qwen3-4b-thinking-2507/{name}.pt", weights_only=True)
    print(name, z["objective"], len(z["layers"]), "layers")
PY
echo "demo: ok"
