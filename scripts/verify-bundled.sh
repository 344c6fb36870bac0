#!/usr/bin/env bash
# oscar-verify's acceptance runs (docs/ACCURACY.md): both bundled models, rotations calibrated by
# oscar-calibrate on the first 20,000 tokens of tinystories_val.txt (configs/<model>.toml), then INT2 with
# sink 8 / recent 32 so that most of a 512-token context is INT2, against fp, naive and Hadamard:
#   - held-out TinyStories text (after the first 25,000 tokens): perplexity, KL(fp || method), top-1;
#   - 200 MMLU (miscellaneous) and 200 ARC-Challenge questions: flip rate (tiny models are at chance there).
# Reports: <out>/<model>/report.{json,md}. Exit status: non-zero when a run fails.
#
#   scripts/verify-bundled.sh [--quick] [--no-build] [--out DIR]
#     --quick     stories260K only, 2,048 text tokens and 20 questions per set (what CI runs)
#     --no-build  use the binaries in build/ as they are (no apt, no build)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/acceptance-options.sh
parse_acceptance_options out/verify "$@"
data=../shared/data
models="stories260K tinystories-656k"
tokens=20480 questions=200
if [ "$quick" = 1 ]; then models="stories260K"; tokens=2048; questions=20; fi
start=$(date +%s)
for name in $models; do
  case "$name" in
    stories260K) model="$data/models/stories260K/stories260K.bin" ;;
    tinystories-656k) model="$data/models/tinystories-656k" ;;
  esac
  dir="$out/$name"
  rm -rf "$dir"
  mkdir -p "$dir"
  echo "== $name: calibrating (configs/$name.toml)"
  build/apps/oscar-calibrate --config "configs/$name.toml" --out "$dir/rotations" -q
  rotations=$(ls -d "$dir"/rotations/seq*/)
  echo "== $name: verifying with $rotations"
  build/apps/oscar-verify --model "$model" --rotations "$rotations" --methods fp,naive,hadamard,oscar \
    --sink 8 --recent 32 --seed 0 --quiet \
    --eval "$data/text/tinystories_val.txt" --skip-tokens 25000 --max-tokens "$tokens" \
    --eval "$data/eval/mmlu/test/miscellaneous_test.csv" "$data/eval/arc_challenge_test.jsonl" --limit "$questions" \
    --report "$dir/report.json" --markdown "$dir/report.md" | tee "$dir/table.txt"
done
echo "verify-bundled: ok in $(( $(date +%s) - start )) s"
