#!/usr/bin/python3
"""Independent reference forward of Hugging Face Llama / Qwen2 / Qwen3 decoders, the oracle for the C++ decoder
(lib/model/decoder.cpp; tests/model/test_decoder_reference.cpp).

Plain PyTorch in float64, written from the math of Hugging Face's modeling_llama / modeling_qwen2 /
modeling_qwen3 (no transformers, no safetensors package: both are absent from Debian's python):

    x      = embed[tokens]                       (tied models may store only lm_head.weight: it is the embedding)
    per layer:
      h    = rmsnorm(x, input_layernorm)         rmsnorm(x, w) = w * x / sqrt(mean(x^2) + eps)
      q    = h Wq^T (+ bq)  -> [T, Hq, d];  k, v = h Wk^T (+ bk), h Wv^T (+ bv) -> [T, Hkv, d]   (biases: Qwen2,
                                                 or attention_bias, which also adds an o_proj bias)
      q, k = rmsnorm(q, q_norm), rmsnorm(k, k_norm) over each head's d channels                (Qwen3)
      q, k = q cos + rotate_half(q) sin, ...     rotate_half(x) = [-x[d/2:], x[:d/2]]          (NeoX pairing)
      attn = softmax(q_i k_j^T / sqrt(d), causal) v_j, query head i reads KV head i // (Hq / Hkv)
      x    = x + attn Wo^T
      x    = x + down(silu(gate(h2)) * up(h2)),  h2 = rmsnorm(x, post_attention_layernorm)   (+ biases: mlp_bias)
    logits = rmsnorm(x, norm) lm_head^T

RoPE: inv_freq = 1 / theta^(arange(0, d, 2) / d), with Llama-3.1 scaling (rope_scaling.rope_type "llama3")
applied per wavelength 2*pi/inv_freq: longer than original_max_position_embeddings / low_freq_factor ->
inv_freq / factor; shorter than original / high_freq_factor -> unchanged; in between blended with
smooth = (original / wavelength - low) / (high - low): (1 - smooth) * inv_freq / factor + smooth * inv_freq.
The inverse frequencies, the angles position * inv_freq and their cos/sin are computed in float32 as Hugging
Face computes them (the rounding of the angle is part of what the model does at inference); everything else
is float64.

CLI (must run with /usr/bin/python3):
    reference_forward.py logits MODEL_DIR TOKENS OUT.npy
        all-position logits [T, vocab] float32
    reference_forward.py capture MODEL_DIR TOKENS LAYER OUT_PREFIX
        OUT_PREFIX{q,k,v}.npy: that layer's post-RoPE q [T, Hq, d], k and v [T, Hkv, d] float32
    reference_forward.py make-random ARCH OUT_DIR SEED
        a tiny random Hugging Face directory (config.json + model.safetensors, float32) for ARCH in
        llama (Llama-3.1 RoPE scaling, GQA 3:1, untied), qwen2 (q/k/v biases, tied, embedding only),
        qwen3 (q/k norm, head_dim 32 != hidden/heads, untied)
    reference_forward.py batch JOBS.json
        runs several of the above in one process (one torch import): JOBS.json is a list of argument
        lists, e.g. [["make-random", "qwen3", "/tmp/q3", "7"], ["logits", "/tmp/q3", "[1,2,3]", "/tmp/l.npy"]]
TOKENS is a JSON list of ids, inline ("[1, 5, 9]") or the path of a file holding one.
"""

import json
import math
import os
import struct
import sys

import numpy as np
import torch

torch.set_grad_enabled(False)

# ---------------------------------------------------------------------------------------------------------
# safetensors: 8-byte little-endian header length, JSON header {name: {dtype, shape, data_offsets}}, data.


def read_safetensors(path):
    """name -> float64 tensor."""
    with open(path, "rb") as f:
        blob = f.read()
    (header_len,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + header_len].decode("utf-8"))
    data = memoryview(blob)[8 + header_len:]
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        raw = data[begin:end]
        dtype = entry["dtype"]
        if dtype == "F32":
            values = np.frombuffer(raw, dtype="<f4").astype(np.float64)
        elif dtype == "F16":
            values = np.frombuffer(raw, dtype="<f2").astype(np.float64)
        elif dtype == "BF16":  # the upper half of a float32
            values = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32).astype(np.float64)
        else:
            raise ValueError("%s: tensor %s has unsupported dtype %s" % (path, name, dtype))
        tensors[name] = torch.from_numpy(values.reshape(entry["shape"]).copy())
    return tensors


def write_safetensors(path, tensors, metadata=None):
    """tensors: name -> float32 numpy array. Header padded with spaces to a multiple of 8, as the reference
    writer does."""
    header = {}
    if metadata:
        header["__metadata__"] = metadata
    offset = 0
    blobs = []
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name], dtype="<f4")
        raw = array.tobytes()
        header[name] = {"dtype": "F32", "shape": list(array.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


# ---------------------------------------------------------------------------------------------------------
# The model.


def load_weights(model_dir):
    single = os.path.join(model_dir, "model.safetensors")
    if os.path.exists(single):
        return read_safetensors(single)
    with open(os.path.join(model_dir, "model.safetensors.index.json")) as f:
        weight_map = json.load(f)["weight_map"]
    tensors = {}
    for shard in sorted(set(weight_map.values())):
        tensors.update(read_safetensors(os.path.join(model_dir, shard)))
    return tensors


class Model:
    def __init__(self, model_dir):
        with open(os.path.join(model_dir, "config.json")) as f:
            self.config = c = json.load(f)
        self.arch = c.get("model_type") or c["architectures"][0]
        self.arch = {"LlamaForCausalLM": "llama", "Qwen2ForCausalLM": "qwen2", "Qwen3ForCausalLM": "qwen3"}.get(
            self.arch, self.arch)
        if self.arch not in ("llama", "qwen2", "qwen3"):
            raise ValueError("unsupported model_type " + self.arch)
        self.dim = c["hidden_size"]
        self.n_layers = c["num_hidden_layers"]
        self.n_heads = c["num_attention_heads"]
        self.n_kv_heads = c.get("num_key_value_heads") or self.n_heads
        self.head_dim = c.get("head_dim") or self.dim // self.n_heads
        self.eps = c.get("rms_norm_eps", 1e-6)
        self.theta = c.get("rope_theta", 10000.0)
        # Qwen2: biases on q/k/v only. Llama / Qwen3 with attention_bias: on q/k/v and o; mlp_bias: on the MLP.
        self.qkv_bias = self.arch == "qwen2" or bool(c.get("attention_bias", False))
        self.o_bias = self.arch != "qwen2" and bool(c.get("attention_bias", False))
        self.mlp_bias = bool(c.get("mlp_bias", False))
        self.qk_norm = self.arch == "qwen3"
        self.w = load_weights(model_dir)
        # The embedding: a tied export may store only lm_head.weight (TinyStories-656K); the classifier: the
        # embedding when tied.
        self.embed = self.w.get("model.embed_tokens.weight")
        if self.embed is None:
            self.embed = self.w["lm_head.weight"]
        tied = c.get("tie_word_embeddings", False)
        self.lm_head = self.embed if tied else self.w["lm_head.weight"]
        self.inv_freq = self.rope_inverse_frequencies()

    def rope_inverse_frequencies(self):
        """float32, as Hugging Face's _compute_default_rope_parameters / _compute_llama3_parameters."""
        d = self.head_dim
        inv_freq = 1.0 / (self.theta ** (torch.arange(0, d, 2, dtype=torch.int64).float() / d))
        scaling = self.config.get("rope_scaling")
        if not scaling:
            return inv_freq
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind == "default":
            return inv_freq
        if kind != "llama3":
            raise ValueError("unsupported rope_scaling " + str(kind))
        factor = scaling["factor"]
        low = scaling["low_freq_factor"]
        high = scaling["high_freq_factor"]
        original = scaling["original_max_position_embeddings"]
        low_freq_wavelen = original / low
        high_freq_wavelen = original / high
        wavelen = 2 * math.pi / inv_freq
        scaled = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        smooth = (original / wavelen - low) / (high - low)
        blended = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
        return torch.where(medium, blended, scaled)

    def rope_tables(self, T):
        """cos, sin [T, d] float64 (each angle repeated for the two halves)."""
        positions = torch.arange(T, dtype=torch.float32)
        angles = positions[:, None] * self.inv_freq[None, :]  # float32, as HF
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos().double(), angles.sin().double()

    def rmsnorm(self, x, weight):
        return weight * (x / torch.sqrt((x * x).mean(dim=-1, keepdim=True) + self.eps))

    def layer(self, i, name):
        return self.w["model.layers.%d.%s" % (i, name)]

    def linear(self, i, name, x, bias):
        """x W^T (+ b) with layer i's <name>.weight [out, in] (and <name>.bias)."""
        y = x @ self.layer(i, name + ".weight").T
        return y + self.layer(i, name + ".bias") if bias else y

    @staticmethod
    def rotate_half(x):
        half = x.shape[-1] // 2
        return torch.cat([-x[..., half:], x[..., :half]], dim=-1)

    def forward(self, tokens, capture_layer=None):
        """tokens: list of ids from position 0. Returns (logits [T, V] float64, {q, k, v} of capture_layer)."""
        T = len(tokens)
        d, Hq, Hkv = self.head_dim, self.n_heads, self.n_kv_heads
        group = Hq // Hkv
        cos, sin = self.rope_tables(T)
        cos, sin = cos[:, None, :], sin[:, None, :]  # broadcast over heads
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        captured = {}
        x = self.embed[torch.tensor(tokens, dtype=torch.long)]
        for i in range(self.n_layers):
            h = self.rmsnorm(x, self.layer(i, "input_layernorm.weight"))
            projections = {}
            for name in ("q", "k", "v"):
                projections[name] = self.linear(i, "self_attn.%s_proj" % name, h, self.qkv_bias).reshape(T, -1, d)
            q, k, v = projections["q"], projections["k"], projections["v"]
            if self.qk_norm:
                q = self.rmsnorm(q, self.layer(i, "self_attn.q_norm.weight"))
                k = self.rmsnorm(k, self.layer(i, "self_attn.k_norm.weight"))
            q = q * cos + self.rotate_half(q) * sin
            k = k * cos + self.rotate_half(k) * sin
            if i == capture_layer:
                captured = {"q": q.clone(), "k": k.clone(), "v": v.clone()}
            heads = []
            for head in range(Hq):
                kv = head // group
                scores = (q[:, head, :] @ k[:, kv, :].T) / math.sqrt(d)  # [T, T]
                scores = scores.masked_fill(~causal, float("-inf"))
                heads.append(torch.softmax(scores, dim=-1) @ v[:, kv, :])  # [T, d]
            attention = torch.cat(heads, dim=-1)  # [T, Hq * d], head-major as o_proj expects
            x = x + self.linear(i, "self_attn.o_proj", attention, self.o_bias)
            h = self.rmsnorm(x, self.layer(i, "post_attention_layernorm.weight"))
            gate = self.linear(i, "mlp.gate_proj", h, self.mlp_bias)
            up = self.linear(i, "mlp.up_proj", h, self.mlp_bias)
            x = x + self.linear(i, "mlp.down_proj", torch.nn.functional.silu(gate) * up, self.mlp_bias)
        logits = self.rmsnorm(x, self.w["model.norm.weight"]) @ self.lm_head.T
        return logits, captured


# ---------------------------------------------------------------------------------------------------------
# Tiny random models.


def random_config(arch):
    common = {
        "model_type": arch,
        "num_hidden_layers": 2,
        "max_position_embeddings": 256,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "torch_dtype": "float32",
    }
    if arch == "llama":
        # head_dim 32 and theta 500000 give high-, medium- and low-frequency bands for an original context of
        # 64 (wavelengths 6.3, 14.3 | 32.4 | 73.6 ...), so the llama3 scaling changes most inv_freq entries.
        return dict(common, architectures=["LlamaForCausalLM"], hidden_size=96, intermediate_size=160,
                    num_attention_heads=3, num_key_value_heads=1, vocab_size=300, rms_norm_eps=1e-5,
                    rope_theta=500000.0, tie_word_embeddings=False, attention_bias=False,
                    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0, "original_max_position_embeddings": 64})
    if arch == "qwen2":
        return dict(common, architectures=["Qwen2ForCausalLM"], hidden_size=64, intermediate_size=128,
                    num_attention_heads=4, num_key_value_heads=2, vocab_size=257, rms_norm_eps=1e-6,
                    rope_theta=1000000.0, tie_word_embeddings=True, use_sliding_window=False)
    if arch == "qwen3":
        return dict(common, architectures=["Qwen3ForCausalLM"], hidden_size=64, intermediate_size=96,
                    num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                    vocab_size=311, rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False,
                    attention_bias=False)
    raise ValueError("unknown arch %s (llama, qwen2, qwen3)" % arch)


def make_random(arch, out_dir, seed):
    """Weights scaled so that activations and logits are O(1): N(0, 4/dim) embedding, N(0, 1/in) matrices, norm
    weights near 1, sizeable biases (Qwen2's k bias is large in real checkpoints)."""
    c = random_config(arch)
    rng = np.random.default_rng(seed)
    dim, hidden, vocab = c["hidden_size"], c["intermediate_size"], c["vocab_size"]
    Hq, Hkv = c["num_attention_heads"], c["num_key_value_heads"]
    d = c.get("head_dim") or dim // Hq

    def matrix(rows, cols, gain=1.0):
        return rng.standard_normal((rows, cols)) * gain / math.sqrt(cols)

    def norm(n):
        return 1.0 + 0.2 * rng.standard_normal(n)

    # Embedding rows of norm ~2, so that a tied classifier gives O(1) logits too.
    t = {"model.embed_tokens.weight": matrix(vocab, dim, 2.0), "model.norm.weight": norm(dim)}
    if not c["tie_word_embeddings"]:
        t["lm_head.weight"] = matrix(vocab, dim, 2.0)
    for i in range(c["num_hidden_layers"]):
        p = "model.layers.%d." % i
        t[p + "input_layernorm.weight"] = norm(dim)
        t[p + "post_attention_layernorm.weight"] = norm(dim)
        t[p + "self_attn.q_proj.weight"] = matrix(Hq * d, dim, 1.5)  # sharper attention than at gain 1
        t[p + "self_attn.k_proj.weight"] = matrix(Hkv * d, dim, 1.5)
        t[p + "self_attn.v_proj.weight"] = matrix(Hkv * d, dim)
        t[p + "self_attn.o_proj.weight"] = matrix(dim, Hq * d)
        if arch == "qwen2":
            t[p + "self_attn.q_proj.bias"] = 0.5 * rng.standard_normal(Hq * d)
            t[p + "self_attn.k_proj.bias"] = 0.5 * rng.standard_normal(Hkv * d)
            t[p + "self_attn.v_proj.bias"] = 0.5 * rng.standard_normal(Hkv * d)
        if arch == "qwen3":
            t[p + "self_attn.q_norm.weight"] = norm(d)
            t[p + "self_attn.k_norm.weight"] = norm(d)
        t[p + "mlp.gate_proj.weight"] = matrix(hidden, dim)
        t[p + "mlp.up_proj.weight"] = matrix(hidden, dim)
        t[p + "mlp.down_proj.weight"] = matrix(dim, hidden)
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(c, f, indent=2)
    write_safetensors(os.path.join(out_dir, "model.safetensors"), t, {"format": "pt"})


# ---------------------------------------------------------------------------------------------------------
# CLI.

_models = {}  # MODEL_DIR -> Model, reused within one batch


def model_at(model_dir):
    if model_dir not in _models:
        _models[model_dir] = Model(model_dir)
    return _models[model_dir]


def parse_tokens(text):
    if not text.lstrip().startswith("["):
        with open(text) as f:
            text = f.read()
    tokens = json.loads(text)
    if not isinstance(tokens, list) or not tokens or not all(isinstance(t, int) for t in tokens):
        raise ValueError("TOKENS must be a non-empty JSON list of integers")
    return tokens


def save(path, tensor):
    np.save(path, tensor.numpy().astype(np.float32))


def run(args):
    mode = args[0] if args else ""
    if mode == "logits" and len(args) == 4:
        logits, _ = model_at(args[1]).forward(parse_tokens(args[2]))
        save(args[3], logits)
    elif mode == "capture" and len(args) == 5:
        layer = int(args[3])
        model = model_at(args[1])
        if not 0 <= layer < model.n_layers:
            raise ValueError("layer %d out of range" % layer)
        _, captured = model.forward(parse_tokens(args[2]), capture_layer=layer)
        for name in ("q", "k", "v"):
            save(args[4] + name + ".npy", captured[name])
    elif mode == "make-random" and len(args) == 4:
        make_random(args[1], args[2], int(args[3]))
        _models.pop(args[2], None)
    elif mode == "batch" and len(args) == 2:
        with open(args[1]) as f:
            for job in json.load(f):
                run([str(a) for a in job])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    run(sys.argv[1:])
