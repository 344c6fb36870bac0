#!/usr/bin/python3
"""Independent float64 implementation of OSCAR calibration, used as the oracle for oscar-calibrate.

It reads an SGLang dump directory (`<dump>/layer_<L>/{q,k,v}/<chunk>.pt`) the way the public reference does:
every chunk of a projection is loaded, widened to float64 and concatenated in memory (chunk 0, the warm-up
batch, is skipped unless asked). It is deliberately simple, not streaming, so that its memory profile matches
the reference for benchmarks (scripts/bench-calibrate.sh).

Module use (tests/python/check_rotations.py):
    covariance(dump, layer, "qqt" | "sst" | "ktk" | "vtv", per_kv_head=False) -> float64 [d, d] or [Hkv, d, d]
    eigen(C) -> (eigenvalues ascending, eigenvectors as columns)
    rotation(eigenvalues, eigenvectors, composition) -> float64 [d, d]
    hadamard(d), bit_reversal(d), permutation_matrix(eigenvalues)

CLI (benchmarks):
    reference_calibration.py --dump D --out DIR [--method qqt_sst] [--composition r_h_pbr]
                             [--granularity layer|kv-head] [--include-chunk0] [--layers A:B]
writes k_rotation_<cov>_<comp>.pt / v_rotation_<cov>_<comp>.pt in the RotationZoo schema and prints one
line per layer with its wall time in seconds.

Formulas (x are rows, T tokens, Hq query heads, Hkv KV heads, g = Hq / Hkv, query head i -> KV head i // g):
    qqt  C = mean over tokens and all query heads of q qᵀ; per KV head: mean over that head's g query heads.
    sst  per KV head h: w_t = k_tᵀ Cq_h k_t, w <- w / max(Σw, 1e-12) * T, C_h = (1/T) Σ_t w_t v_t v_tᵀ;
         C = mean over h of C_h.
    ktk / vtv  mean of k kᵀ / v vᵀ over tokens and KV heads (per KV head for kv-head granularity).
Every C is symmetrised, (C + Cᵀ)/2, before the eigendecomposition. Must run with /usr/bin/python3.
"""

import argparse
import math
import os
import re
import sys
import time

import torch

COVARIANCES = ("qqt", "sst", "ktk", "vtv")
# method -> [(target, covariance)], the files a method writes.
METHOD_TARGETS = {
    "qqt_sst": [("k", "qqt"), ("v", "sst")],
    "ktk_vtv": [("k", "ktk"), ("v", "vtv")],
    "qqt": [("k", "qqt")],
    "sst": [("v", "sst")],
    "ktk": [("k", "ktk")],
    "vtv": [("v", "vtv")],
}
COMPOSITIONS = ("plain", "pbr", "br", "br_h128", "r_h", "h_pbr", "h_r_pbr", "h_pbr_r", "r_h_pbr")


# ----------------------------------------------------------------------------------------------- dump reading

def layer_ids(dump):
    """Ascending layer ids of the layer_<L> directories of a dump."""
    ids = []
    for name in os.listdir(dump):
        match = re.fullmatch(r"layer_(\d+)", name)
        if match and os.path.isdir(os.path.join(dump, name)):
            ids.append(int(match.group(1)))
    return sorted(ids)


def chunk_ids(dump, layer, projection="q", include_chunk0=False):
    """Ascending chunk ids present for one projection of one layer."""
    directory = os.path.join(dump, f"layer_{layer}", projection)
    ids = sorted(int(name[:-3]) for name in os.listdir(directory)
                 if name.endswith(".pt") and name[:-3].isdigit())
    return [c for c in ids if include_chunk0 or c != 0]


def load_chunk(dump, layer, projection, chunk, head_dim=None):
    """One chunk as float64 [T, H, d] (2-D [T, H*d] tensors are reshaped; they need head_dim)."""
    path = os.path.join(dump, f"layer_{layer}", projection, f"{chunk}.pt")
    tensor = torch.load(path, map_location="cpu")
    if tensor.dim() == 2:
        if not head_dim:
            raise ValueError(f"{path}: 2-D tensor needs head_dim")
        tensor = tensor.reshape(tensor.shape[0], -1, head_dim)
    if tensor.dim() != 3:
        raise ValueError(f"{path}: expected [T, H, d], got shape {tuple(tensor.shape)}")
    return tensor.float().double()


def load_projection(dump, layer, projection, include_chunk0=False, head_dim=None, chunks=None):
    """All chunks of one projection, concatenated: float64 [T, H, d]."""
    if chunks is None:
        chunks = chunk_ids(dump, layer, projection, include_chunk0)
    if not chunks:
        raise FileNotFoundError(f"no chunks in {os.path.join(dump, f'layer_{layer}', projection)}")
    return torch.cat([load_chunk(dump, layer, projection, c, head_dim) for c in chunks], dim=0)


def token_count(dump, layer, include_chunk0=False, head_dim=None):
    """T of a layer: tokens of the chunks used (read from k, the smallest projection)."""
    return sum(load_chunk(dump, layer, "k", c, head_dim).shape[0]
               for c in chunk_ids(dump, layer, "k", include_chunk0))


# ------------------------------------------------------------------------------------------------ covariances

def symmetrise(c):
    return (c + c.transpose(-1, -2)) / 2


def _finite_rows(x):
    """[T] bool: rows of a [T, ...] tensor without NaN or infinity."""
    return torch.isfinite(x.reshape(x.shape[0], -1)).all(dim=1)


def query_group_covariances(q, kv_heads, skip_nonfinite=False):
    """[Hkv, d, d]: per KV head, mean over tokens and its g query heads of q qᵀ. With skip_nonfinite, tokens
    whose group of queries holds a NaN/inf are left out of that head's mean."""
    tokens, q_heads, d = q.shape
    g = q_heads // kv_heads
    out = torch.empty(kv_heads, d, d, dtype=torch.float64)
    for h in range(kv_heads):
        group = q[:, h * g:(h + 1) * g, :]
        if skip_nonfinite:
            group = group[_finite_rows(group)]
        group = group.reshape(-1, d)
        out[h] = group.T @ group / group.shape[0]
    return out


def head_covariances(x, skip_nonfinite=False):
    """[H, d, d]: per head, mean over tokens of x xᵀ (non-finite rows left out with skip_nonfinite)."""
    tokens, heads, d = x.shape
    out = torch.empty(heads, d, d, dtype=torch.float64)
    for h in range(heads):
        xh = x[:, h, :]
        if skip_nonfinite:
            xh = xh[_finite_rows(xh)]
        out[h] = xh.T @ xh / xh.shape[0]
    return out


def sst_head_covariances(q, k, v, skip_nonfinite=False):
    """[Hkv, d, d]: the weighted value covariance of each KV head (weights from the query covariance).

    C_h = (1/T) Σ w_t v vᵀ with w = u / max(Σu, 1e-12) · T, u_t = k_tᵀ Cq_h k_t. With skip_nonfinite, tokens
    with a NaN/inf in their query group, k or v of that head are left out (T counts the tokens kept)."""
    tokens, kv_heads, d = k.shape
    g = q.shape[1] // kv_heads
    cq = query_group_covariances(q, kv_heads, skip_nonfinite)
    out = torch.empty(kv_heads, d, d, dtype=torch.float64)
    for h in range(kv_heads):
        kh, vh = k[:, h, :], v[:, h, :]
        if skip_nonfinite:
            keep = _finite_rows(q[:, h * g:(h + 1) * g, :]) & _finite_rows(kh) & _finite_rows(vh)
            kh, vh = kh[keep], vh[keep]
        n = kh.shape[0]
        w = ((kh @ cq[h]) * kh).sum(dim=1)
        w = w / max(w.sum().item(), 1e-12) * n
        out[h] = (vh * w[:, None]).T @ vh / n
    return out


def covariance_from_tensors(cov, q=None, k=None, v=None, per_kv_head=False, skip_nonfinite=False):
    """Symmetrised covariance from in-memory float64 tensors: [d, d], or [Hkv, d, d] per KV head.
    The layer covariance is the mean over KV heads of each head's covariance."""
    if cov == "qqt":
        per_head = query_group_covariances(q, k.shape[1], skip_nonfinite)
    elif cov == "sst":
        per_head = sst_head_covariances(q, k, v, skip_nonfinite)
    elif cov == "ktk":
        per_head = head_covariances(k, skip_nonfinite)
    elif cov == "vtv":
        per_head = head_covariances(v, skip_nonfinite)
    else:
        raise ValueError(f"unknown covariance {cov!r}; choose from {', '.join(COVARIANCES)}")
    result = per_head if per_kv_head else per_head.mean(dim=0)
    return symmetrise(result)


def covariance(dump, layer, cov, per_kv_head=False, include_chunk0=False, head_dim=None, skip_nonfinite=False):
    """Covariance of one layer of an SGLang dump (loads what it needs, as the reference does)."""
    needed = {"qqt": "qk", "sst": "qkv", "ktk": "k", "vtv": "v"}[cov]
    tensors = {p: load_projection(dump, layer, p, include_chunk0, head_dim) for p in needed}
    return covariance_from_tensors(cov, q=tensors.get("q"), k=tensors.get("k"), v=tensors.get("v"),
                                   per_kv_head=per_kv_head, skip_nonfinite=skip_nonfinite)


# -------------------------------------------------------------------------------------------------- rotations

def hadamard(d):
    """Normalised Sylvester Hadamard, H[i][j] = (-1)^popcount(i & j) / sqrt(d), float64."""
    if d < 1 or d & (d - 1):
        raise ValueError(f"Hadamard size must be a power of two, got {d}")
    idx = torch.arange(d)
    bits = idx[:, None] & idx[None, :]
    parity = torch.zeros(d, d, dtype=torch.long)
    while bool(bits.any()):
        parity ^= bits & 1
        bits = bits >> 1
    return (1.0 - 2.0 * parity.double()) / math.sqrt(d)


def bit_reversal(d):
    """br[i] = i with its log2(d) bits reversed."""
    if d < 1 or d & (d - 1):
        raise ValueError(f"bit reversal needs a power of two, got {d}")
    bits = d.bit_length() - 1
    return [int(format(i, f"0{bits}b")[::-1], 2) if bits else 0 for i in range(d)]


def permutation_indices(eigenvalues):
    """perm with perm[br[i]] = i-th largest eigenvalue's index; P = I[:, perm]."""
    d = eigenvalues.shape[0]
    order = torch.argsort(eigenvalues, descending=True).tolist()
    perm = [0] * d
    for i, j in enumerate(bit_reversal(d)):
        perm[j] = order[i]
    return perm


def permutation_matrix(eigenvalues):
    d = eigenvalues.shape[0]
    return torch.eye(d, dtype=torch.float64)[:, permutation_indices(eigenvalues)]


def eigen(c):
    """(eigenvalues ascending, eigenvectors as columns), float64, of a symmetrised matrix (batched ok)."""
    return torch.linalg.eigh(symmetrise(c.double()))


def composition_factors(eigenvalues, composition):
    """(A, B) with R = A · U · B, or (R, None) for compositions without U (pbr, h_pbr)."""
    d = eigenvalues.shape[0]
    eye = torch.eye(d, dtype=torch.float64)
    h = hadamard(d)
    p = permutation_matrix(eigenvalues)
    factors = {
        "plain": (eye, eye),
        "br": (eye, p),
        "br_h128": (eye, p @ h),
        "r_h": (eye, h),
        "r_h_pbr": (eye, h @ p),
        "h_r_pbr": (h, p),
        "h_pbr_r": (h @ p, eye),
        "pbr": (p, None),
        "h_pbr": (h @ p, None),
    }
    if composition not in factors:
        raise ValueError(f"unknown composition {composition!r}; choose from {', '.join(COMPOSITIONS)}")
    return factors[composition]


def rotation(eigenvalues, eigenvectors, composition):
    """The composed rotation (float64 [d, d]) for one eigendecomposition."""
    a, b = composition_factors(eigenvalues, composition)
    if b is None:
        return a
    return a @ eigenvectors @ b


# ------------------------------------------------------------------------------------------------------- CLI

def parse_layers(text):
    a, _, b = text.partition(":")
    return int(a), int(b)


def empty_result(objective, per_kv_head):
    return {"format_version": 2 if per_kv_head else 1, "objective": objective,
            "source_grouping": "per_kv_head" if per_kv_head else "layer", "layers": {}}


def calibrate_layer(dump, layer, targets, composition, per_kv_head, include_chunk0, head_dim):
    """{cov: (rotation fp64, eigenvalues fp64)} for one layer; each covariance loads its own tensors, as the
    reference does (qqt_sst reads q and k twice)."""
    out = {}
    for _, cov in targets:
        c = covariance(dump, layer, cov, per_kv_head, include_chunk0, head_dim)
        values, vectors = eigen(c)
        if per_kv_head:
            rot = torch.stack([rotation(values[h], vectors[h], composition) for h in range(c.shape[0])])
        else:
            rot = rotation(values, vectors, composition)
        out[cov] = (rot, values)
        del c
    return out


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dump", required=True, help="SGLang dump directory")
    parser.add_argument("--out", required=True)
    parser.add_argument("--method", default="qqt_sst", choices=sorted(METHOD_TARGETS))
    parser.add_argument("--composition", default="r_h_pbr", choices=COMPOSITIONS)
    parser.add_argument("--granularity", default="layer", choices=("layer", "kv-head"))
    parser.add_argument("--include-chunk0", action="store_true")
    parser.add_argument("--layers", type=parse_layers, help="A:B, half-open")
    parser.add_argument("--head-dim", type=int, default=None, help="only for 2-D dumps")
    args = parser.parse_args(argv)

    torch.set_num_threads(max(1, torch.get_num_threads()))
    per_kv_head = args.granularity == "kv-head"
    targets = METHOD_TARGETS[args.method]
    layers = layer_ids(args.dump)
    if args.layers:
        layers = [l for l in layers if args.layers[0] <= l < args.layers[1]]
    if not layers:
        print(f"{args.dump}: no layer_<L> directories", file=sys.stderr)
        return 1
    os.makedirs(args.out, exist_ok=True)
    results = {cov: empty_result(f"{cov}_{args.composition}", per_kv_head) for _, cov in targets}
    total = 0.0
    for layer in layers:
        start = time.perf_counter()
        per_cov = calibrate_layer(args.dump, layer, targets, args.composition, per_kv_head,
                                  args.include_chunk0, args.head_dim)
        for cov, (rot, values) in per_cov.items():
            results[cov]["layers"][layer] = {"layer_id": layer, "rotation": rot.float().contiguous(),
                                             "eigenvalues": values.float().contiguous()}
        seconds = time.perf_counter() - start
        total += seconds
        print(f"layer {layer} {seconds:.3f} s", flush=True)
    for target, cov in targets:
        path = os.path.join(args.out, f"{target}_rotation_{cov}_{args.composition}.pt")
        torch.save(results[cov], path)
    print(f"total {total:.3f} s over {len(layers)} layers", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
