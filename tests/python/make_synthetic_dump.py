#!/usr/bin/python3
"""Writes a synthetic activation dump in the SGLang dumper layout, for tests and benchmarks.

    OUT_DIR/layer_<L>/{q,k,v,seq_lens}/<chunk>.pt     (each one tensor, written by torch.save)

Chunk 0 is a warm-up chunk of --warmup-tokens tokens (as SGLang's dumper produces); chunks 1..--chunks hold
--tokens-per-chunk + 3 * chunk_index tokens each, so chunk sizes differ, and are split into two sequences
(seq_lens). The data is anisotropic on purpose: x = z @ A + offset[head], with z standard normal and A a
random d x d mixing matrix whose column scales fall geometrically from 1 to 0.05, so the covariance
eigenvalues are distinct and a calibrator has something real to find.

Output is deterministic for a given --seed: every layer has its own generator, so dropping or corrupting one
layer leaves the others bit-identical. Generation runs in float32 with one matmul per chunk (fast enough for
benchmarks with 100k tokens per layer, Hq 32, d 128).

Options that damage the dump on purpose (for error-path tests): --nan, --drop-layer, --bad-heads, --truncate.
--reference FILE additionally writes one text line per tensor:
    <layer> <chunk> <proj> <shape as T,H,d> <sum> <abs_sum> <first 4 values>
computed in float64 from exactly the values that were saved (after the dtype cast).

Must run with the Debian python (/usr/bin/python3, torch 1.13).
"""

import argparse
import os
import sys

import torch

DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
PROJECTIONS = ("q", "k", "v")


def parse_layer_chunk(text, parts, option):
    """'3:5' -> (3, 5); '3:5:k' -> (3, 5, 'k'). Raises argparse-friendly errors."""
    fields = text.split(":")
    if len(fields) != parts:
        raise argparse.ArgumentTypeError(f"{option} expects {parts} ':'-separated fields, got {text!r}")
    numbers = tuple(int(f) for f in fields[:2])
    return numbers + tuple(fields[2:])


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir")
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--q-heads", type=int, default=8)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--head-dim", type=int, default=16)
    parser.add_argument("--chunks", type=int, default=4, help="chunks after the warm-up chunk 0")
    parser.add_argument("--tokens-per-chunk", type=int, default=50)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup-tokens", type=int, default=6)
    parser.add_argument("--flat", action="store_true", help="store q/k/v as 2-D [T, H*d]")
    parser.add_argument("--nan", action="append", default=[], metavar="LAYER:CHUNK",
                        type=lambda t: parse_layer_chunk(t, 2, "--nan"), help="put a NaN into k of that chunk")
    parser.add_argument("--drop-layer", action="append", default=[], type=int, metavar="L",
                        help="omit the layer_<L> directory")
    parser.add_argument("--bad-heads", action="append", default=[], metavar="LAYER:CHUNK",
                        type=lambda t: parse_layer_chunk(t, 2, "--bad-heads"),
                        help="write k of that chunk with kv-heads + 1 heads")
    parser.add_argument("--truncate", action="append", default=[], metavar="LAYER:CHUNK:PROJ",
                        type=lambda t: parse_layer_chunk(t, 3, "--truncate"),
                        help="cut that .pt file (proj q, k, v or seq_lens) in half")
    parser.add_argument("--reference", metavar="FILE", help="also write per-tensor sums and first values")
    args = parser.parse_args(argv)
    if args.q_heads % args.kv_heads:
        parser.error("--q-heads must be a multiple of --kv-heads")
    return args


def chunk_token_counts(args):
    """{chunk_id: tokens}: the warm-up chunk 0, then chunks whose sizes differ (tokens + 3 * index)."""
    counts = {0: args.warmup_tokens}
    for chunk in range(1, args.chunks + 1):
        counts[chunk] = args.tokens_per_chunk + 3 * chunk
    return counts


class ProjectionModel:
    """x = z @ A + offset[head] for one layer and projection, A with geometric column scales."""

    def __init__(self, generator, heads, head_dim):
        mixing = torch.randn(head_dim, head_dim, generator=generator) / head_dim ** 0.5
        column_scales = torch.logspace(0.0, torch.log10(torch.tensor(0.05)).item(), head_dim)
        self.mixing = mixing * column_scales[None, :]
        self.offsets = 0.1 * torch.randn(heads, head_dim, generator=generator)
        self.heads = heads
        self.head_dim = head_dim

    def sample(self, generator, tokens, heads=None):
        heads = self.heads if heads is None else heads
        z = torch.randn(tokens * heads, self.head_dim, generator=generator)
        x = (z @ self.mixing).view(tokens, heads, self.head_dim)
        offsets = self.offsets if heads == self.heads else torch.cat([self.offsets, self.offsets[:1]])
        return x.add_(offsets[None, :, :])  # in place: benchmark chunks are hundreds of MB


def truncate_in_half(path):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)


def reference_line(layer, chunk, projection, tensor):
    values = tensor.double().flatten()
    first = " ".join(repr(v) for v in values[:4].tolist())
    shape = ",".join(str(s) for s in tensor.shape)
    return (f"{layer} {chunk} {projection} {shape} {values.nansum().item()!r} "
            f"{values.abs().nansum().item()!r} {first}\n")


def write_layer(args, layer, reference):
    generator = torch.Generator().manual_seed(args.seed * 1_000_003 + layer)
    heads = {"q": args.q_heads, "k": args.kv_heads, "v": args.kv_heads}
    models = {p: ProjectionModel(generator, heads[p], args.head_dim) for p in PROJECTIONS}
    layer_dir = os.path.join(args.out_dir, f"layer_{layer}")
    for sub in PROJECTIONS + ("seq_lens",):
        os.makedirs(os.path.join(layer_dir, sub), exist_ok=True)

    for chunk, tokens in chunk_token_counts(args).items():
        for projection in PROJECTIONS:
            chunk_heads = heads[projection]
            if projection == "k" and (layer, chunk) in args.bad_heads:
                chunk_heads += 1
            x = models[projection].sample(generator, tokens, chunk_heads).to(DTYPES[args.dtype])
            if projection == "k" and (layer, chunk) in args.nan and tokens > 0:
                x[0, 0, 0] = float("nan")
            if reference is not None:
                reference.write(reference_line(layer, chunk, projection, x))
            if args.flat:
                x = x.reshape(tokens, chunk_heads * args.head_dim)
            torch.save(x.contiguous(), os.path.join(layer_dir, projection, f"{chunk}.pt"))
        first_sequence = tokens // 2
        seq_lens = torch.tensor([first_sequence, tokens - first_sequence], dtype=torch.int32)
        torch.save(seq_lens, os.path.join(layer_dir, "seq_lens", f"{chunk}.pt"))

    for t_layer, t_chunk, t_projection in args.truncate:
        if t_layer == layer:
            truncate_in_half(os.path.join(layer_dir, t_projection, f"{t_chunk}.pt"))


def main(argv):
    args = parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    reference = open(args.reference, "w") if args.reference else None
    try:
        for layer in range(args.layers):
            if layer in args.drop_layer:
                continue
            write_layer(args, layer, reference)
    finally:
        if reference is not None:
            reference.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
