#!/usr/bin/env bash
# Every KV-cache method of oscar-verify on both bundled models at the same windows (sink 8, recent 32):
# held-out TinyStories text (KL, perplexity, top-1) and 100 ARC questions (flip rate). Writes the results
# table of docs/METHODS.md (between its RESULTS markers) and docs/methods-kl-bits.png (gnuplot).
#
#   scripts/compare-methods.sh [--quick] [--no-build] [--out DIR]
#     --quick     stories260K only, 1,024 text tokens, 10 questions; docs are not touched (what CI runs)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/acceptance-options.sh
parse_acceptance_options out/compare-methods "$@"
data=../shared/data
methods=fp,naive-sym,naive,quarot,oscar,kivi2,turboquant-k2v2,eoptshrinkq,turboquant-k3v3
models="stories260K tinystories-656k" tokens=8192 questions=100
if [ "$quick" = 1 ]; then models="stories260K"; tokens=1024; questions=10; fi
mkdir -p "$out"
for name in $models; do
  rotations=$(ls -d zoo/"$name"/seq*/ | head -1)
  model=$(/usr/bin/python3 -c "import tomllib,sys; print(tomllib.load(open('configs/$name.toml','rb'))['model'])")
  echo "== $name"
  build/apps/oscar-verify --model "$model" --rotations "$rotations" --methods "$methods" --sink 8 --recent 32 --seed 0 -q \
    --eval "$data/text/tinystories_val.txt" --skip-tokens 25000 --max-tokens "$tokens" \
    --eval "$data/eval/arc_challenge_test.jsonl" --limit "$questions" \
    --report "$out/$name.json" --markdown "$out/$name.md"
done
[ "$quick" = 1 ] && { echo "compare-methods: ok (quick)"; exit 0; }

/usr/bin/python3 - "$out" <<'PY'
import json, re, sys
out = sys.argv[1]
rows, points = [], []
for name, label in (("stories260K", "stories260K (d = 8)"), ("tinystories-656k", "TinyStories-656K (d = 16)")):
    report = json.load(open(f"{out}/{name}.json"))
    rows.append(f"\n### {label}\n")
    rows.append("| method | bits/element | KL(fp‖method) | perplexity | top-1 agree % | ARC flip % |")
    rows.append("|---|---|---|---|---|---|")
    for s in report["summary"]:
        t, m = s["text"], s["multiple_choice"]
        rows.append(f"| {s['method']} | {s['bits_per_element']:.2f} | {t['kl_mean']:.4f} | {t['perplexity']:.3f} | "
                    f"{t['top1_agreement']:.1f} | {m['flip_rate']:.1f} |")
        if s["method"] != "fp":
            points.append(f"{name} {s['method']} {s['bits_per_element']:.4f} {max(t['kl_mean'], 1e-6):.6g}")
doc = open("docs/METHODS.md").read()
table = "\n".join(rows).strip()
doc, count = re.subn(r"(<!-- RESULTS -->\n).*?(<!-- /RESULTS -->)", lambda m: m.group(1) + table + "\n" + m.group(2), doc, flags=re.S)
if count != 1:
    sys.exit("compare-methods: docs/METHODS.md lacks the RESULTS markers")
open("docs/METHODS.md", "w").write(doc)
open(f"{out}/points.dat", "w").write("\n".join(points) + "\n")
PY
gnuplot <<GNUPLOT
set terminal pngcairo size 900,560 noenhanced font ",10"
set output "docs/methods-kl-bits.png"
set title "KV-cache methods at sink 8 / recent 32: KL(fp || method) on held-out TinyStories"
set xlabel "stored bits per K/V element (measured)"
set ylabel "mean KL per token (nats)"
set logscale y
set grid
set key outside right
plot "< grep ^stories260K $out/points.dat" using 3:4 with points pt 7 ps 1.3 title "stories260K (d=8)", \
     "" using 3:4:2 with labels offset 0.6,0.6 left notitle, \
     "< grep ^tinystories-656k $out/points.dat" using 3:4 with points pt 5 ps 1.3 title "TinyStories-656K (d=16)", \
     "" using 3:4:2 with labels offset 0.6,-0.6 left notitle
GNUPLOT
echo "compare-methods: wrote docs/METHODS.md results and docs/methods-kl-bits.png"
