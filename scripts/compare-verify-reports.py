#!/usr/bin/env python3
"""Compare two oscar-verify JSON reports of the same run on different devices (CPU and CUDA runtime).

    compare-verify-reports.py CPU.json CUDA.json [--kl-rel 0.05] [--ppl-rel 0.02] [--points 2.5]

For every dataset and method present in both, prints each metric side by side and fails (exit 1) when
    |Δ kl_mean|        > kl_rel · max(kl_cpu, kl_cuda) + 1e-4 nats,
    |Δ perplexity|     > ppl_rel · perplexity_cpu,
    |Δ top-1|, |Δ accuracy| > points (percentage points),
or when bits_per_element differ at all (both runtimes store the same bytes). Standard library only, so it runs
under any python3.
"""
import argparse
import json
import sys


def load(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError) as error:
        sys.exit(f"{path}: {error}")


def compare(cpu, cuda, args):
    failures = []
    rows = []
    for index, (a, b) in enumerate(zip(cpu["datasets"], cuda["datasets"])):
        name = f"{index}:{a['kind']}:{a.get('path', '').rsplit('/', 1)[-1]}"
        for method in sorted(set(a["methods"]) & set(b["methods"])):
            x, y = a["methods"][method], b["methods"][method]
            checks = [("bits_per_element", 0.0)]
            checks.append(("kl_mean", args.kl_rel * max(x.get("kl_mean", 0), y.get("kl_mean", 0)) + 1e-4))
            if "perplexity" in x:
                checks.append(("perplexity", args.ppl_rel * x["perplexity"]))
            for key in ("top1_agreement", "accuracy", "flip_rate"):
                if key in x:
                    checks.append((key, args.points))
            for key, tolerance in checks:
                if key not in x or key not in y:
                    continue
                delta = abs(x[key] - y[key])
                ok = delta <= tolerance
                rows.append(f"{name:32s} {method:16s} {key:18s} {x[key]:12.6g} {y[key]:12.6g} {delta:10.3g} {'ok' if ok else 'FAIL'}")
                if not ok:
                    failures.append(f"{name} {method} {key}: cpu {x[key]:.6g} cuda {y[key]:.6g} (|Δ| {delta:.3g} > {tolerance:.3g})")
    return rows, failures


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cpu")
    parser.add_argument("cuda")
    parser.add_argument("--kl-rel", type=float, default=0.05)
    parser.add_argument("--ppl-rel", type=float, default=0.02)
    parser.add_argument("--points", type=float, default=2.5)
    args = parser.parse_args()
    cpu, cuda = load(args.cpu), load(args.cuda)
    if len(cpu["datasets"]) != len(cuda["datasets"]):
        sys.exit(f"{args.cuda}: {len(cuda['datasets'])} datasets, {args.cpu} has {len(cpu['datasets'])}")
    rows, failures = compare(cpu, cuda, args)
    print(f"{'dataset':32s} {'method':16s} {'metric':18s} {'cpu':>12s} {'cuda':>12s} {'|Δ|':>10s}")
    print("\n".join(rows))
    for failure in failures:
        print("FAIL " + failure)
    print(f"{len(rows) - len(failures)}/{len(rows)} metrics within tolerance")
    return 1 if failures or not rows else 0


if __name__ == "__main__":
    sys.exit(main())
