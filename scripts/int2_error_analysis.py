#!/usr/bin/python3
"""INT2 KV-cache quantization error of several rotations on an oscar activation dump (.h5).

For every layer and for the rotations identity, Hadamard (normalised Sylvester), the calibrated OSCAR K / V
(k_rotation_*.pt / v_rotation_*.pt in --rotations), and optionally a seeded random orthogonal matrix and the
bare eigenbasis U of the OSCAR rotation (R = U.H.P), rotated keys and values are quantized exactly as the INT2
format does (docs: oscar-reference.md section 5, one group per row, float32 scale/zero) and the script reports:
  kmse    relative key MSE          sum |k - k^|^2 / sum |k|^2
  logit   query-weighted logit err  E[(q.(k - k^))^2] / E[(q.k)^2] over causal (query, key) pairs of a sequence
  dlogit  RMS logit error in nats   sqrt(E[(q.(k - k^))^2] / d), next to the RMS logit sqrt(E[(q.k)^2] / d)
  vmse    relative value MSE        sum |v - v^|^2 / sum |v|^2
  vmse_w  the same weighted by the SST proxy weight w_t = k^T C_Q,h k (what the OSCAR V objective weights)
  ext     share of row energy held by the row's min and max elements (those are stored exactly by min/max INT2)
plus per-channel key statistics before rotation (max/mean channel energy, mean kurtosis) and consistency checks:
orthogonality of R, q.k preserved under R, and how well the eigenbasis U recovered from R diagonalises the dump's
query covariance C_Q (keys) and SST covariance C_S (values).

Usage: /usr/bin/python3 scripts/int2_error_analysis.py DUMP.h5 ROTATION_DIR [--k-clip 0.96] [--v-clip 0.92]
"""
import argparse
import glob
import os

import h5py
import numpy as np
import torch


def hadamard(d):
    i = np.arange(d)
    bits = np.vectorize(lambda x: bin(x).count("1"))(i[:, None] & i[None, :])
    return torch.tensor((-1.0) ** bits / np.sqrt(d), dtype=torch.float64)


def bitrev_perm(eigvals):
    """perm of the reference's P for composition r_h_pbr: (X.U.H.P)[:, j] = (X.U.H)[:, perm[j]]."""
    d = len(eigvals)
    nbits = d.bit_length() - 1
    order = np.argsort(-np.asarray(eigvals), kind="stable")
    perm = np.zeros(d, dtype=np.int64)
    for i in range(d):
        perm[int(format(i, f"0{nbits}b")[::-1], 2)] = order[i]
    return perm


def quant_int2(x, ratio):
    """x [..., d] float32 -> dequantized rows (clip, asymmetric min/max, round half up, group = d)."""
    d = x.shape[-1]
    if ratio > 0:
        idx = min(max(int(ratio * d), 0), d - 1)
        tau = x.abs().sort(dim=-1).values[..., idx:idx + 1]
        x = torch.maximum(torch.minimum(x, tau), -tau)
    mn, mx = x.min(-1, keepdim=True).values, x.max(-1, keepdim=True).values
    scale = torch.clamp(mx - mn, min=1e-8) / 3
    zero = -mn / scale
    code = torch.clamp(torch.floor(x / scale + zero + 0.5), 0, 3)
    return (code - zero) * scale


def load_rot(path):
    obj = torch.load(path, weights_only=True)
    return {int(k): (v["rotation"].double(), v["eigenvalues"].double()) for k, v in obj["layers"].items()}


def offdiag(m):
    return float((m - torch.diag(torch.diag(m))).norm() / m.norm())


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dump")
    ap.add_argument("rotations", help="directory with one k_rotation_*.pt and one v_rotation_*.pt")
    ap.add_argument("--k-clip", type=float, default=0.96)
    ap.add_argument("--v-clip", type=float, default=0.92)
    ap.add_argument("--extra", action="store_true", help="also a seeded random orthogonal R and the bare eigenbasis U")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rk = load_rot(glob.glob(os.path.join(a.rotations, "k_rotation_*.pt"))[0])
    rv = load_rot(glob.glob(os.path.join(a.rotations, "v_rotation_*.pt"))[0])
    f = h5py.File(a.dump, "r")
    L, d = int(f.attrs["num_layers"]), int(f.attrs["head_dim"])
    hq, hkv = int(f.attrs["num_q_heads"]), int(f.attrs["num_kv_heads"])
    g = hq // hkv
    H = hadamard(d)
    print(f"{a.dump}: {L} layers, d={d}, Hq={hq}, Hkv={hkv}; clip K {a.k_clip} (index {int(a.k_clip * d)}), "
          f"V {a.v_clip} (index {int(a.v_clip * d)}) of {d}")
    rows = []
    for layer in range(L):
        grp = f[f"layer_{layer}"]
        q = torch.tensor(grp["q"][:], dtype=torch.float64)
        k = torch.tensor(grp["k"][:], dtype=torch.float64)
        v = torch.tensor(grp["v"][:], dtype=torch.float64)
        off = grp["chunk_offsets"][:]
        seqs = []  # (start, end) of every sequence
        for c in range(len(off) - 1):
            lens = grp["seq_lens"][grp["seq_lens_offsets"][c]:grp["seq_lens_offsets"][c + 1]]
            s = off[c]
            for n in (lens if len(lens) else [off[c + 1] - off[c]]):
                seqs.append((s, s + n)); s += n
        # covariances of section 2 (from the float16 dump) and the eigenbases recovered from the calibrated R
        qg = q.view(-1, hkv, g, d)
        cqh = torch.einsum("thgi,thgj->hij", qg, qg) / (qg.shape[0] * g)  # C̄_Q,h per KV head
        cq = cqh.mean(0)
        w = torch.einsum("thi,hij,thj->th", k, cqh, k)
        w = w / w.sum(0).clamp(min=1e-12) * w.shape[0]
        cs = torch.einsum("th,thi,thj->ij", w, v, v) / (w.shape[0] * hkv)
        chk = {}
        for name, (R, ev), C in (("K", rk[layer], cq), ("V", rv[layer], cs)):
            perm = bitrev_perm(ev.numpy())
            inv = np.argsort(perm)
            U = R[:, inv] @ H  # R = U.H.P  =>  U.H = R.P^T
            ev_dump = torch.linalg.eigvalsh((C + C.T) / 2)
            chk[name] = (float((R @ R.T - torch.eye(d, dtype=R.dtype)).abs().max()), offdiag(U.T @ C @ U),
                         float(((ev_dump - ev).abs().max() / ev.abs().max())), U)
        qk = torch.einsum("thgi,thi->thg", qg, k)
        qk_rot = torch.einsum("thgi,thi->thg", qg @ rk[layer][0], k @ rk[layer][0])
        chk_qk = float((qk - qk_rot).abs().max() / qk.abs().max())
        # per-channel key statistics (unrotated)
        kc = k.reshape(-1, d)
        en = (kc ** 2).mean(0)
        kurt = ((kc - kc.mean(0)) ** 4).mean(0) / kc.var(0) ** 2
        print(f"layer {layer}: |RRt-I| K {chk['K'][0]:.1e} V {chk['V'][0]:.1e}; max|dqk|/max|qk| {chk_qk:.1e}; "
              f"offdiag(Ut C U)/|C| K {chk['K'][1]:.1e} V {chk['V'][1]:.1e}; eig rel diff K {chk['K'][2]:.1e} "
              f"V {chk['V'][2]:.1e}; key ch energy max/mean {float(en.max() / en.mean()):.2f} "
              f"min/mean {float(en.min() / en.mean()):.2f}; kurtosis mean {float(kurt.mean()):.2f} "
              f"max {float(kurt.max()):.2f}; C_Q eig max/mean {float(rk[layer][1].max() / rk[layer][1].mean()):.2f}")
        rots = {"identity": (torch.eye(d, dtype=torch.float64),) * 2, "hadamard": (H, H),
                "oscar": (rk[layer][0], rv[layer][0])}
        if a.extra:
            gen = torch.Generator().manual_seed(a.seed + layer)
            Qr, Rr = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
            rots["random"] = (Qr * torch.sign(torch.diag(Rr)),) * 2
            rots["eigbasis"] = (chk["K"][3], chk["V"][3])
        for rname, (RK, RV) in rots.items():
            kr, vr = (k @ RK).float(), (v @ RV).float()
            ek = (quant_int2(kr, a.k_clip) - kr).double()
            ev_ = (quant_int2(vr, a.v_clip) - vr).double()
            qr = (q @ RK)
            num = den = pairs = 0.0
            for s, e in seqs:  # causal pairs of one sequence, every query head with its KV head
                n = e - s
                mask = torch.tril(torch.ones(n, n, dtype=torch.bool))
                for h in range(hkv):
                    qq = qr[s:e, h * g:(h + 1) * g].transpose(0, 1)  # [g, n, d]
                    num += float(((qq @ ek[s:e, h].T) ** 2)[:, mask].sum())
                    den += float(((qq @ kr[s:e, h].double().T) ** 2)[:, mask].sum())
                    pairs += g * int(mask.sum())
            srt = kr.double().pow(2)
            ext = float((kr.max(-1).values.double() ** 2 + kr.min(-1).values.double() ** 2).sum() / srt.sum())
            rows.append((layer, rname, float((ek ** 2).sum() / (k ** 2).sum()), num / den, (num / pairs / d) ** 0.5,
                         float((ev_ ** 2).sum() / (v ** 2).sum()),
                         float((w[..., None] * ev_ ** 2).sum() / (w[..., None] * v ** 2).sum()), ext))
        print(f"layer {layer}: RMS logit q.k/sqrt(d) over causal pairs {(den / pairs / d) ** 0.5:.2f} nats")
    print(f"\n{'layer':>5} {'rotation':>9} {'kmse':>8} {'logit':>8} {'dlogit':>7} {'vmse':>8} {'vmse_w':>8} {'ext':>6}")
    for r in rows:
        print(f"{r[0]:>5} {r[1]:>9} {r[2]:8.4f} {r[3]:8.4f} {r[4]:7.3f} {r[5]:8.4f} {r[6]:8.4f} {r[7]:6.3f}")
    print("mean over layers:")
    for rname in dict.fromkeys(r[1] for r in rows):
        m = np.mean([r[2:] for r in rows if r[1] == rname], axis=0)
        print(f"{'all':>5} {rname:>9} {m[0]:8.4f} {m[1]:8.4f} {m[2]:7.3f} {m[3]:8.4f} {m[4]:8.4f} {m[5]:6.3f}")


if __name__ == "__main__":
    main()
