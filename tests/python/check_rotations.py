#!/usr/bin/python3
"""Checks the rotation files oscar-calibrate wrote against an independent float64 computation.

    check_rotations.py --dump D --out DIR --method M --composition C [--granularity layer|kv-head]
                       [--include-chunk0] [--layers A:B] [--compare OTHER_DIR] [--no-json]
    check_rotations.py --method hadamard --out DIR --num-layers N --head-dim D

D is the SGLang dump directory the rotations were computed from (tests/python/reference_calibration.py reads
it); DIR holds our k_rotation_<cov>_<comp>.pt / v_rotation_<cov>_<comp>.pt and calibration.json.

What is checked, for every file the method writes (and that the files it does not write are absent):
  * schema, exactly: top-level keys {format_version, objective, source_grouping, layers}; format_version 1 and
    source_grouping "layer" (kv-head granularity: 2 and "per_kv_head"); objective "<cov>_<comp>" ("hadamard");
    int layer keys equal to python-int layer_id; per layer exactly {layer_id, rotation, eigenvalues}, float32
    contiguous tensors of shape [d, d] and [d] ([Hkv, d, d] and [Hkv, d]); loads with weights_only=True and
    without it; every expected layer present and no other;
  * R Rᵀ = I within 1e-6 (max abs, computed in float64 from the stored float32);
  * eigenvalues ascending and equal to the eigenvalues of Python's C (relative 1e-6: they are stored in fp32);
  * the rotation itself, compared in a way that does not depend on eigenvector signs or on the basis chosen
    inside repeated eigenvalues. Every data composition is R = A · U · B with A, B free of U
    (plain, br, br_h128, r_h, r_h_pbr: A = I; h_r_pbr: A = H, B = P; h_pbr_r: A = H·P, B = I). With
    X = Aᵀ R = U · B we compare Xᵀ C X (= Bᵀ Λ B, sign-invariant) between our R and Python's R; for A = I that
    is exactly Rᵀ C R. It holds only if the columns of Aᵀ R are eigenvectors of C, so it is a full check. pbr
    and h_pbr contain no U and are compared element-wise. Tolerance: max abs difference <= --tol (default
    1e-6) times the largest |eigenvalue|; fp32 storage of R alone contributes ~1e-8 of that;
  * calibration.json exists, parses, and its token count equals T (the tokens of the chunks used).
With --compare OTHER_DIR the same Xᵀ C X quantity is also compared between DIR and OTHER_DIR (both ours; e.g.
a sharded accumulate + merge against a single run) within --compare-tol.
Exit 0 when every check passes, 1 with one line per failure otherwise (2 for usage errors).
Must run with the Debian python (/usr/bin/python3, torch 1.13).
"""

import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference_calibration as ref  # noqa: E402

ALL_TARGET_FILES = ("k", "v")
TOP_KEYS = {"format_version", "objective", "source_grouping", "layers"}
LAYER_KEYS = {"layer_id", "rotation", "eigenvalues"}
# Names under which calibration.json may record the token count (searched recursively).
TOKEN_KEYS = ("tokens", "num_tokens", "token_count", "n_tokens", "tokens_per_layer", "total_tokens")


class Failures:
    def __init__(self):
        self.messages = []
        self.worst = {}  # comparison -> largest relative difference seen

    def add(self, message):
        self.messages.append(message)

    def check(self, condition, message):
        if not condition:
            self.add(message)
        return condition


def parse_layers(text):
    a, sep, b = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(f"--layers expects A:B, got {text!r}")
    return int(a), int(b)


def expected_files(method, composition):
    """{target: (file name, covariance)} of the files a method writes."""
    if method == "hadamard":
        return {t: (f"{t}_rotation_hadamard.pt", None) for t in ALL_TARGET_FILES}
    return {t: (f"{t}_rotation_{cov}_{composition}.pt", cov) for t, cov in ref.METHOD_TARGETS[method]}


def load_checked(path, failures):
    """torch.load with weights_only=True (and plainly); None when it fails."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - any failure is a finding
        failures.add(f"{path}: torch.load(weights_only=True) failed: {error}")
        return None
    try:
        torch.load(path, map_location="cpu")
    except Exception as error:  # noqa: BLE001
        failures.add(f"{path}: plain torch.load failed: {error}")
    return data


def check_tensor(path, where, value, shape, failures):
    if not failures.check(isinstance(value, torch.Tensor), f"{path}: {where} is {type(value).__name__}, "
                                                           f"not a tensor"):
        return False
    ok = failures.check(value.dtype == torch.float32, f"{path}: {where} dtype {value.dtype}, expected float32")
    ok &= failures.check(tuple(value.shape) == tuple(shape),
                         f"{path}: {where} shape {tuple(value.shape)}, expected {tuple(shape)}")
    ok &= failures.check(value.is_contiguous(), f"{path}: {where} is not contiguous")
    ok &= failures.check(bool(torch.isfinite(value).all()), f"{path}: {where} has non-finite values")
    return ok


def check_schema(path, data, objective, per_kv_head, layers, head_dim, kv_heads, failures):
    """Schema checks; returns {layer: (rotation fp64 [(H,) d, d], eigenvalues fp64 [(H,) d])} of good layers."""
    if not failures.check(isinstance(data, dict), f"{path}: top level is {type(data).__name__}, not dict"):
        return {}
    failures.check(set(data.keys()) == TOP_KEYS, f"{path}: top-level keys {sorted(map(str, data))}, "
                                                 f"expected {sorted(TOP_KEYS)}")
    version = data.get("format_version")
    want_version = 2 if per_kv_head else 1
    failures.check(type(version) is int and version == want_version,
                   f"{path}: format_version {version!r}, expected int {want_version}")
    failures.check(data.get("objective") == objective,
                   f"{path}: objective {data.get('objective')!r}, expected {objective!r}")
    grouping = "per_kv_head" if per_kv_head else "layer"
    failures.check(data.get("source_grouping") == grouping,
                   f"{path}: source_grouping {data.get('source_grouping')!r}, expected {grouping!r}")
    entries = data.get("layers")
    if not failures.check(isinstance(entries, dict), f"{path}: 'layers' is {type(entries).__name__}, not dict"):
        return {}
    for key in entries:
        failures.check(type(key) is int, f"{path}: layer key {key!r} is {type(key).__name__}, not int")
    keys = {k for k in entries if type(k) is int}
    missing = sorted(set(layers) - keys)
    extra = sorted(keys - set(layers))
    failures.check(not missing, f"{path}: layers {missing} missing")
    failures.check(not extra, f"{path}: unexpected layers {extra}")

    good = {}
    for layer in sorted(set(layers) & keys):
        entry = entries[layer]
        if not failures.check(isinstance(entry, dict), f"{path}: layer {layer} entry is not a dict"):
            continue
        failures.check(set(entry.keys()) == LAYER_KEYS,
                       f"{path}: layer {layer} keys {sorted(map(str, entry))}, expected {sorted(LAYER_KEYS)}")
        layer_id = entry.get("layer_id")
        failures.check(type(layer_id) is int and layer_id == layer,
                       f"{path}: layer {layer} layer_id {layer_id!r} ({type(layer_id).__name__}), expected int "
                       f"{layer}")
        lead = (kv_heads,) if per_kv_head else ()
        ok = check_tensor(path, f"layer {layer} rotation", entry.get("rotation"), lead + (head_dim, head_dim),
                          failures)
        ok &= check_tensor(path, f"layer {layer} eigenvalues", entry.get("eigenvalues"), lead + (head_dim,),
                           failures)
        if ok:
            good[layer] = (entry["rotation"].double(), entry["eigenvalues"].double())
    return good


def as_heads(x, per_kv_head):
    """View [d, d] / [d] as one head so the per-head loop covers both granularities."""
    return x if per_kv_head else x.unsqueeze(0)


def check_orthogonal(path, layer, rotations, failures, tol=1e-6):
    d = rotations.shape[-1]
    eye = torch.eye(d, dtype=torch.float64)
    for h, r in enumerate(rotations):
        err = (r @ r.T - eye).abs().max().item()
        failures.check(err <= tol, f"{path}: layer {layer} head {h}: max |R Rᵀ - I| = {err:.3e} > {tol:g}")


def invariant(r, c_values, composition):
    """Sign- and basis-invariant quantity of R (see the module doc): Xᵀ C X with X = Aᵀ R, or R itself."""
    values, c = c_values
    a, b = ref.composition_factors(values, composition)
    if b is None:
        return r
    x = a.T @ r
    return x.T @ c @ x


def eigen_check(path, layer, h, ours, python, failures, rtol=1e-6):
    if not failures.check(bool((ours[1:] >= ours[:-1]).all()),
                          f"{path}: layer {layer} head {h}: eigenvalues not ascending"):
        return
    scale = python.abs().max().item()
    err = ((ours - python).abs() - rtol * python.abs() - 1e-9 * scale).max().item()
    if err > 0:
        worst = int(((ours - python).abs() / python.abs().clamp(min=1e-300)).argmax())
        failures.add(f"{path}: layer {layer} head {h}: eigenvalue {worst} is {ours[worst].item():.9g}, "
                     f"Python {python[worst].item():.9g} (rel tol {rtol:g})")


def compare_rotation(path, layer, h, ours, theirs, c, values, composition, tol, failures, what):
    scale = max(values.abs().max().item(), 1e-300)
    c_values = (values, c)
    diff = (invariant(ours, c_values, composition) - invariant(theirs, c_values, composition)).abs().max().item()
    quantity = "Xᵀ C X"
    if composition in ("pbr", "h_pbr"):
        scale, quantity = 1.0, "R"
    failures.worst[what] = max(failures.worst.get(what, 0.0), diff / scale)
    failures.check(diff <= tol * scale,
                   f"{path}: layer {layer} head {h}: rotation differs from {what}: max |Δ({quantity})| = "
                   f"{diff:.3e} > {tol:g} x {scale:.3e}")


def token_values(node, found, path=""):
    """Collects (key path, int) for every TOKEN_KEYS entry of a JSON tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f"{path}.{key}" if path else str(key)
            if key in TOKEN_KEYS and isinstance(value, int) and not isinstance(value, bool):
                found.append((sub, value))
            token_values(value, found, sub)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            token_values(value, found, f"{path}[{i}]")
    return found


def skipped_values(node, found, path=""):
    """(key path, int) of every integer entry whose key contains 'skipped'."""
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f"{path}.{key}" if path else str(key)
            if "skipped" in str(key) and isinstance(value, int) and not isinstance(value, bool):
                found.append((sub, value))
            skipped_values(value, found, sub)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            skipped_values(value, found, f"{path}[{i}]")
    return found


def check_json(out_dir, tokens_by_layer, failures, nonfinite_rows=0):
    path = os.path.join(out_dir, "calibration.json")
    if not failures.check(os.path.isfile(path), f"{path}: missing"):
        return
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, ValueError) as error:
        failures.add(f"{path}: not valid JSON: {error}")
        return
    found = token_values(data, [])
    if not failures.check(bool(found), f"{path}: no token count (keys {', '.join(TOKEN_KEYS)})"):
        return
    allowed = set(tokens_by_layer.values())
    for key, value in found:
        failures.check(value in allowed, f"{path}: {key} = {value}, Python counts {sorted(allowed)} tokens")
    if nonfinite_rows:
        skipped = [value for key, value in skipped_values(data, [])]
        failures.check(any(v > 0 for v in skipped),
                       f"{path}: the dump has {nonfinite_rows} non-finite rows but no skipped-token count > 0 "
                       f"(keys containing 'skipped')")


def check_hadamard(args, failures):
    files = expected_files("hadamard", None)
    h = ref.hadamard(args.head_dim)
    layers = list(range(args.num_layers))
    for target, (name, _) in files.items():
        path = os.path.join(args.out, name)
        if not failures.check(os.path.isfile(path), f"{path}: missing"):
            continue
        data = load_checked(path, failures)
        if data is None:
            continue
        good = check_schema(path, data, "hadamard", False, layers, args.head_dim, 1, failures)
        for layer, (r, _) in good.items():
            check_orthogonal(path, layer, r.unsqueeze(0), failures)
            err = (r - h).abs().max().item()
            failures.check(err <= 1e-7, f"{path}: layer {layer}: max |R - H| = {err:.3e} > 1e-7")
    if not args.no_json:
        record = os.path.join(args.out, "calibration.json")
        failures.check(os.path.isfile(record), f"{record}: missing")


def check_data(args, failures):
    per_kv_head = args.granularity == "kv-head"
    files = expected_files(args.method, args.composition)
    layers = ref.layer_ids(args.dump)
    if args.layers:
        layers = [l for l in layers if args.layers[0] <= l < args.layers[1]]
    if not failures.check(bool(layers), f"{args.dump}: no layers to check"):
        return
    # Files the method must not write.
    for target in ALL_TARGET_FILES:
        if target not in files:
            stray = [n for n in os.listdir(args.out) if n.startswith(f"{target}_rotation_") and n.endswith(".pt")]
            failures.check(not stray, f"{args.out}: method {args.method} should not write {stray}")

    # Geometry from the dump (first chunk of k and q of the first layer).
    first_chunk = ref.chunk_ids(args.dump, layers[0], "k", args.include_chunk0)[0]
    k0 = ref.load_chunk(args.dump, layers[0], "k", first_chunk, args.head_dim)
    kv_heads, d = k0.shape[1], k0.shape[2]

    def load_set(directory, what):
        """{target: (path, {layer: (rotation, eigenvalues)}, cov)} of the files that load."""
        out = {}
        for target, (name, cov) in files.items():
            path = os.path.join(directory, name)
            if not failures.check(os.path.isfile(path), f"{path}: missing{what}"):
                continue
            data = load_checked(path, failures)
            if data is not None:
                good = check_schema(path, data, f"{cov}_{args.composition}", per_kv_head, layers, d, kv_heads,
                                    failures)
                out[target] = (path, good, cov)
        return out

    ours = load_set(args.out, "")
    others = load_set(args.compare, " (--compare)") if args.compare else {}

    tokens_by_layer = {}
    nonfinite_rows = 0
    for layer in layers:
        q = ref.load_projection(args.dump, layer, "q", args.include_chunk0, args.head_dim)
        k = ref.load_projection(args.dump, layer, "k", args.include_chunk0, args.head_dim)
        v = ref.load_projection(args.dump, layer, "v", args.include_chunk0, args.head_dim)
        tokens_by_layer[layer] = k.shape[0]
        nonfinite_rows += sum(int((~torch.isfinite(x)).any(dim=-1).sum()) for x in (q, k, v))
        for target, (path, good, cov) in ours.items():
            if layer not in good:
                continue
            rot, vals = (as_heads(x, per_kv_head) for x in good[layer])
            check_orthogonal(path, layer, rot, failures)
            c = as_heads(ref.covariance_from_tensors(cov, q=q, k=k, v=v, per_kv_head=per_kv_head,
                                                    skip_nonfinite=args.skip_nonfinite), per_kv_head)
            if not failures.check(bool(torch.isfinite(c).all()),
                                  f"{args.dump}: layer {layer}: Python's {cov} covariance is not finite (the dump "
                                  f"has NaN/inf; pass --skip-nonfinite if the run did)"):
                continue
            py_vals, py_vecs = ref.eigen(c)
            other_rot = None
            if target in others and layer in others[target][1]:
                other_rot = as_heads(others[target][1][layer][0], per_kv_head)
            for h in range(c.shape[0]):
                eigen_check(path, layer, h, vals[h], py_vals[h], failures, args.eig_rtol)
                py_rot = ref.rotation(py_vals[h], py_vecs[h], args.composition)
                compare_rotation(path, layer, h, rot[h], py_rot, c[h], py_vals[h], args.composition, args.tol,
                                 failures, "Python")
                if other_rot is not None:
                    compare_rotation(path, layer, h, rot[h], other_rot[h], c[h], py_vals[h], args.composition,
                                     args.compare_tol, failures, args.compare)
        del q, k, v
    if not args.no_json:
        check_json(args.out, tokens_by_layer, failures, nonfinite_rows)


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dump", help="SGLang dump directory the rotations came from")
    parser.add_argument("--out", required=True, help="directory holding our .pt files and calibration.json")
    parser.add_argument("--method", required=True, choices=sorted(ref.METHOD_TARGETS) + ["hadamard"])
    parser.add_argument("--composition", default="r_h_pbr", choices=ref.COMPOSITIONS)
    parser.add_argument("--granularity", default="layer", choices=("layer", "kv-head"))
    parser.add_argument("--include-chunk0", action="store_true")
    parser.add_argument("--layers", type=parse_layers, help="A:B (half-open): the layers the files must hold")
    parser.add_argument("--head-dim", type=int, help="for --method hadamard, or a dump of 2-D tensors")
    parser.add_argument("--num-layers", type=int, help="for --method hadamard")
    parser.add_argument("--compare", metavar="OTHER_DIR", help="also compare with our files in OTHER_DIR")
    parser.add_argument("--tol", type=float, default=1e-6, help="relative to the largest |eigenvalue|")
    parser.add_argument("--compare-tol", type=float, default=1e-6, help="relative, for --compare")
    parser.add_argument("--eig-rtol", type=float, default=1e-6)
    parser.add_argument("--no-json", action="store_true", help="do not check calibration.json")
    parser.add_argument("--skip-nonfinite", action="store_true",
                        help="Python leaves out tokens with NaN/inf, per KV head and statistic (see "
                             "reference_calibration.py)")
    args = parser.parse_args(argv)

    failures = Failures()
    if args.method == "hadamard" and (args.num_layers is None or args.head_dim is None):
        parser.error("--method hadamard needs --num-layers and --head-dim")
    if args.method != "hadamard" and not args.dump:
        parser.error(f"--method {args.method} needs --dump")
    try:
        if args.method == "hadamard":
            check_hadamard(args, failures)
        else:
            check_data(args, failures)
    except Exception as error:  # noqa: BLE001 - report, do not crash with a traceback
        failures.add(f"checker stopped: {type(error).__name__}: {error}")

    if failures.messages:
        for message in failures.messages:
            print(f"FAIL {message}", file=sys.stderr)
        print(f"check_rotations: {len(failures.messages)} failure(s)", file=sys.stderr)
        return 1
    margins = ", ".join(f"max rel diff vs {what} {value:.2e}" for what, value in sorted(failures.worst.items()))
    print(f"check_rotations: OK ({args.method}, {args.out}{'; ' + margins if margins else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
