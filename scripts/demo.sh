#!/usr/bin/env bash
# The main job on bundled data: installs, builds, calibrates OSCAR rotations from a synthetic SGLang-layout
# Q/K/V dump written by Python (Qwen3-like geometry, small; the result is checked from PyTorch) and from the
# bundled models directly (stories260K from configs/stories260K.toml, TinyStories-656K on ARC prompts), then
# verifies stories260K's rotations with an INT2 cache (oscar-verify) and writes them as a GGUF (oscar-zoo).
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
echo "== the bundled models load and behave (oscar-model)"
data=../shared/data
build/apps/oscar-model info "$data/models/stories260K/stories260K.bin"
build/apps/oscar-model generate "$data/models/stories260K/stories260K.bin" --prompt "Once upon a time" --max-tokens 40
build/apps/oscar-model perplexity "$data/models/tinystories-656k" --text "$data/text/tinystories_sample.txt"
echo "== calibrating the bundled stories260K model directly (capture -> accumulators, no dump): configs/stories260K.toml"
rm -rf out/stories260K
build/apps/oscar-calibrate --config configs/stories260K.toml
cat out/stories260K/*/calibration.json | grep -E '"(tag|tokens|prompts)"'
echo "== and TinyStories-656K (Hugging Face safetensors) on ARC questions in the simple-evals template"
build/apps/oscar-calibrate --model "$data/models/tinystories-656k" --data "$data/eval/arc_challenge_test.jsonl" \
  --max-prompts 20 --tokens 4000 --out "$work/656k"
ls "$work/656k"/*
echo "== oscar-verify: INT2 KV with those rotations against fp, naive and Hadamard INT2 (sink 8, recent 32)"
build/apps/oscar-verify --model "$data/models/stories260K/stories260K.bin" --rotations "$(ls -d out/stories260K/seq*/ | head -1)" \
  --eval "$data/text/tinystories_val.txt" --skip-tokens 25000 --max-tokens 2048 --eval "$data/eval/arc_challenge_test.jsonl" \
  --limit 20 --sink 8 --recent 32 --quiet --markdown out/stories260K/verify.md
echo "== oscar-zoo: the rotations as a GGUF for llama.cpp, and what it holds"
build/apps/oscar-zoo convert "$(ls -d out/stories260K/seq*/ | head -1)" out/stories260K/rotations.gguf
build/apps/oscar-zoo inspect out/stories260K/rotations.gguf | head -4
echo "== the real RotationZoo files load too"
/usr/bin/python3 - <<'PY'
import torch
for name in ("k_rotation_qqt_r_h_pbr", "v_rotation_sst_r_h_pbr"):
    z = torch.load(f"../shared/data/rotationzoo/qwen3-4b-thinking-2507/{name}.pt", weights_only=True)
    print(name, z["objective"], len(z["layers"]), "layers")
PY
echo "demo: ok"
