// The only translation unit of the decoder that includes LibTorch (ATen) headers.
#include "model/decoder.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <malloc.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

#include "core/error.h"

namespace oscar::model {
namespace {

constexpr double kPi = 3.14159265358979323846;
/// Positions scored per classifier product in next_token_log_probs: bounds the [positions, vocab] logits
/// (151k vocabulary × 256 × 4 bytes = 155 MB) whatever the sequence length.
constexpr int64_t kScoringBlock = 256;
/// Attention scores held at once during a prefill (elements): 32M floats = 128 MB, whatever the context.
constexpr int64_t kScoreElements = int64_t{1} << 25;

/// LibTorch's temporaries are megabytes each; with glibc's defaults they are returned to the OS when freed
/// and page-faulted back in on the next forward (38% of stories260K prefill time, measured with perf).
/// Raising the thresholds keeps them in the heap. Process-wide, idempotent, done once.
void keep_freed_buffers() {
  static const bool once = [] {
    mallopt(M_MMAP_THRESHOLD, 256 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
    return true;
  }();
  (void)once;
}

at::ScalarType scalar_type(DType dtype) {
  switch (dtype) {
    case DType::kFloat32: return at::kFloat;
    case DType::kFloat16: return at::kHalf;
    case DType::kBFloat16: return at::kBFloat16;
    default: throw std::logic_error("decoder: weights must be float32, float16 or bfloat16");
  }
}

at::Device parse_device(const std::string& name) {
  if (name == "cpu") return at::Device(at::kCPU);
  if (name.rfind("cuda", 0) == 0) {
    if (!at::hasCUDA()) throw UsageError("--device " + name + ": this LibTorch build has no CUDA (or no GPU is visible)");
    try {
      return at::Device(name);
    } catch (const std::exception&) {
      throw UsageError("--device " + name + ": not a device name (cpu, cuda, cuda:N)");
    }
  }
  throw UsageError("--device " + name + ": expected cpu, cuda or cuda:N");
}

/// A weight as a tensor of `dtype` on `device`. A float32 weight used as float32 on the CPU is adopted in
/// place (the tensor's deleter keeps the file mapping or vector alive), so a memory-mapped checkpoint is
/// never copied; anything else is converted once here.
at::Tensor weight_tensor(const WeightTensor& weight, at::ScalarType dtype, at::Device device) {
  const at::ScalarType stored = scalar_type(weight.dtype);
  std::shared_ptr<const void> owner = weight.owner;
  const bool aligned = reinterpret_cast<std::uintptr_t>(weight.data) % dtype_size(weight.dtype) == 0;
  at::Tensor view;
  if (aligned) {
    view = at::from_blob(const_cast<void*>(weight.data), weight.shape, [owner](void*) {}, at::TensorOptions(stored));
  } else {  // a safetensors header of odd length: copy rather than hand BLAS a misaligned pointer
    view = at::empty(weight.shape, at::TensorOptions(stored));
    std::memcpy(view.data_ptr(), weight.data, weight.nbytes());
  }
  if (stored == dtype && device.is_cpu()) return view;
  return view.to(device, dtype);
}

/// RMSNorm as Hugging Face computes it: the statistics in float32, the weight applied in the model's dtype.
at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, float eps) {
  const at::Tensor x32 = x.to(at::kFloat);
  const at::Tensor normed = x32 * at::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

/// RoPE on x [B, T, H, d] with cos/sin [B, T, 1, d/2] (already in x's dtype).
at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin, RopeStyle style) {
  const int64_t half = x.size(-1) / 2;
  if (style == RopeStyle::kNeox) {  // pairs (i, i + d/2), Hugging Face's rotate_half
    const at::Tensor x0 = x.narrow(-1, 0, half), x1 = x.narrow(-1, half, half);
    return at::cat({x0 * cos - x1 * sin, x0 * sin + x1 * cos}, -1);
  }
  // pairs (2i, 2i+1), llama2.c's run.c
  const at::Tensor pairs = x.unflatten(-1, {half, 2});
  const at::Tensor x0 = pairs.select(-1, 0), x1 = pairs.select(-1, 1);
  return at::stack({x0 * cos - x1 * sin, x0 * sin + x1 * cos}, -1).flatten(-2);
}

/// Inverse frequencies 1/theta^(2i/d), in float as llama2.c's run.c and Hugging Face compute them (so that
/// greedy decoding reproduces their tokens), with Llama-3.1's wavelength-dependent scaling when enabled.
std::vector<float> inverse_frequencies(const ModelConfig& c) {
  std::vector<float> inv_freq(static_cast<size_t>(c.head_dim / 2));
  for (size_t i = 0; i < inv_freq.size(); ++i) {
    inv_freq[i] = 1.0f / std::pow(static_cast<float>(c.rope_theta), static_cast<float>(2 * i) / static_cast<float>(c.head_dim));
  }
  const Llama3RopeScaling& s = c.rope_scaling;
  if (!s.enabled) return inv_freq;
  const double low_freq_wavelen = s.original_max_position / s.low_freq_factor;
  const double high_freq_wavelen = s.original_max_position / s.high_freq_factor;
  for (float& f : inv_freq) {
    const double wavelen = 2 * kPi / f;
    if (wavelen > low_freq_wavelen) {
      f = static_cast<float>(f / s.factor);  // long wavelengths: interpolated
    } else if (wavelen >= high_freq_wavelen) {  // the band between: blended
      const double smooth = (s.original_max_position / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
      f = static_cast<float>((1 - smooth) * f / s.factor + smooth * f);
    }  // short wavelengths: unchanged
  }
  return inv_freq;
}

struct LayerWeights {
  at::Tensor attn_norm, wq, wk, wv, wo, bq, bk, bv, q_norm, k_norm;  // biases/norms undefined when absent
  at::Tensor ffn_norm, w_gate, w_up, w_down;
};

}  // namespace

DType parse_compute_dtype(const std::string& name) {
  if (name == "float32") return DType::kFloat32;
  if (name == "bfloat16") return DType::kBFloat16;
  throw UsageError("--dtype " + name + ": expected float32 or bfloat16");
}

struct Decoder::State {
  ModelConfig config;
  DecoderOptions options;
  at::ScalarType dtype = at::kFloat;
  at::Device device = at::Device(at::kCPU);
  at::Tensor embedding, classifier, final_norm;
  std::vector<LayerWeights> layers;
  std::vector<float> inv_freq;
  at::Tensor rope_cos, rope_sin;              // [positions, d/2] float32 on the device, grown on demand
  std::vector<at::Tensor> k_cache, v_cache;   // per layer [B, capacity, Hkv, d]
  std::vector<int> positions;                 // per sequence
  int64_t capacity = 0;
  KvAttention* kv_attention = nullptr;        // external cache and attention, or nullptr

  void load(const ModelWeights& weights);
  void ensure_rope(int64_t positions_needed);
  void ensure_capacity(int64_t slots);
  at::Tensor run_layers(const std::vector<std::vector<int>>& tokens, CaptureSink* sink);
  at::Tensor attention(int layer, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                       const std::vector<int64_t>& lengths, CaptureSink* sink);
  at::Tensor attend(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values,
                    const at::Tensor& first_position) const;
  at::Tensor attend_external(int layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) const;
  at::Tensor feed_forward(int layer, const at::Tensor& x) const;
  at::Tensor logits(const at::Tensor& hidden) const;
};

void Decoder::State::load(const ModelWeights& w) {
  const ModelConfig& c = config;
  const int64_t dim = c.dim, q = c.q_dim(), kv = c.kv_dim(), hid = c.hidden_dim, d = c.head_dim;
  auto take = [&](const std::string& name, std::vector<int64_t> shape) { return weight_tensor(w.at(name, shape), dtype, device); };
  embedding = take("model.embed_tokens.weight", {c.vocab_size, dim});
  classifier = c.tied_embeddings ? embedding : take("lm_head.weight", {c.vocab_size, dim});
  final_norm = take("model.norm.weight", {dim});
  layers.resize(static_cast<size_t>(c.n_layers));
  for (int i = 0; i < c.n_layers; ++i) {
    auto layer = [&](const std::string& suffix, std::vector<int64_t> shape) { return take(layer_tensor_name(i, suffix), shape); };
    LayerWeights& l = layers[static_cast<size_t>(i)];
    l.attn_norm = layer("input_layernorm.weight", {dim});
    l.wq = layer("self_attn.q_proj.weight", {q, dim});
    l.wk = layer("self_attn.k_proj.weight", {kv, dim});
    l.wv = layer("self_attn.v_proj.weight", {kv, dim});
    l.wo = layer("self_attn.o_proj.weight", {dim, q});
    if (c.qkv_bias) {
      l.bq = layer("self_attn.q_proj.bias", {q});
      l.bk = layer("self_attn.k_proj.bias", {kv});
      l.bv = layer("self_attn.v_proj.bias", {kv});
    }
    if (c.qk_norm) {
      l.q_norm = layer("self_attn.q_norm.weight", {d});
      l.k_norm = layer("self_attn.k_norm.weight", {d});
    }
    l.ffn_norm = layer("post_attention_layernorm.weight", {dim});
    l.w_gate = layer("mlp.gate_proj.weight", {hid, dim});
    l.w_up = layer("mlp.up_proj.weight", {hid, dim});
    l.w_down = layer("mlp.down_proj.weight", {dim, hid});
  }
}

void Decoder::State::ensure_rope(int64_t positions_needed) {
  const int64_t have = rope_cos.defined() ? rope_cos.size(0) : 0;
  if (positions_needed <= have) return;
  const int64_t count = std::max(positions_needed, std::min<int64_t>(2 * have, config.max_seq_len));
  const int64_t half = static_cast<int64_t>(inv_freq.size());
  at::Tensor cos = at::empty({count, half}, at::kFloat), sin = at::empty({count, half}, at::kFloat);
  float* cos_out = cos.data_ptr<float>();
  float* sin_out = sin.data_ptr<float>();
  for (int64_t pos = 0; pos < count; ++pos) {
    for (int64_t i = 0; i < half; ++i) {
      const float angle = static_cast<float>(pos) * inv_freq[static_cast<size_t>(i)];  // float product, as run.c / HF
      cos_out[pos * half + i] = std::cos(angle);
      sin_out[pos * half + i] = std::sin(angle);
    }
  }
  rope_cos = cos.to(device);
  rope_sin = sin.to(device);
}

/// Grows every layer's cache to hold `slots` positions per sequence (doubling, capped at the context), so a
/// long generation reallocates O(log n) times and a short calibration never allocates the full context.
void Decoder::State::ensure_capacity(int64_t slots) {
  if (slots <= capacity) return;
  const int64_t grown = std::min<int64_t>(std::max(slots, 2 * capacity), config.max_seq_len);
  const int64_t batch = static_cast<int64_t>(positions.size());
  for (int layer = 0; layer < config.n_layers; ++layer) {
    for (auto* cache : {&k_cache, &v_cache}) {
      at::Tensor bigger = at::zeros({batch, grown, config.n_kv_heads, config.head_dim}, at::TensorOptions(dtype).device(device));
      if (capacity > 0) bigger.narrow(1, 0, capacity).copy_((*cache)[static_cast<size_t>(layer)]);
      (*cache)[static_cast<size_t>(layer)] = bigger;
    }
  }
  capacity = grown;
}

/// One attention block for a padded batch x [B, T, dim]; row b holds lengths[b] real tokens at positions
/// positions[b]...; the cache is written for real tokens only.
at::Tensor Decoder::State::attention(int layer, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                     const std::vector<int64_t>& lengths, CaptureSink* sink) {
  const ModelConfig& c = config;
  const LayerWeights& w = layers[static_cast<size_t>(layer)];
  const int64_t B = x.size(0), T = x.size(1), d = c.head_dim, Hkv = c.n_kv_heads;
  const at::Tensor h = rms_norm(x, w.attn_norm, c.rms_eps);
  at::Tensor q = at::linear(h, w.wq, w.bq).view({B, T, c.n_heads, d});
  at::Tensor k = at::linear(h, w.wk, w.bk).view({B, T, Hkv, d});
  const at::Tensor v = at::linear(h, w.wv, w.bv).view({B, T, Hkv, d});
  if (c.qk_norm) {
    q = rms_norm(q, w.q_norm, c.rms_eps);
    k = rms_norm(k, w.k_norm, c.rms_eps);
  }
  q = apply_rope(q, cos, sin, c.rope_style);
  k = apply_rope(k, cos, sin, c.rope_style);

  int64_t slots = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = lengths[static_cast<size_t>(b)], start = positions[static_cast<size_t>(b)];
    slots = std::max(slots, start + n);
    if (n == 0) continue;
    const at::Tensor row_k = k[b].narrow(0, 0, n).contiguous(), row_v = v[b].narrow(0, 0, n).contiguous();
    if (sink) sink->on_layer(layer, static_cast<int>(b), q[b].narrow(0, 0, n).contiguous(), row_k, row_v);
    k_cache[static_cast<size_t>(layer)][b].narrow(0, start, n).copy_(row_k);
    v_cache[static_cast<size_t>(layer)][b].narrow(0, start, n).copy_(row_v);
  }

  if (kv_attention) return at::linear(attend_external(layer, q, k, v), w.wo);

  const at::Tensor keys = k_cache[static_cast<size_t>(layer)].narrow(1, 0, slots).permute({0, 2, 3, 1});    // [B,Hkv,d,S]
  const at::Tensor values = v_cache[static_cast<size_t>(layer)].narrow(1, 0, slots).permute({0, 2, 1, 3});  // [B,Hkv,S,d]
  const std::vector<int64_t> row_start(positions.begin(), positions.end());
  const at::Tensor starts = at::tensor(row_start, at::kLong).view({B, 1});
  // Queries in blocks, so the scores of a long prefill stay bounded ([B, Hq, block, S] at a time).
  const int64_t block = std::max<int64_t>(1, kScoreElements / (B * c.n_heads * slots));
  std::vector<at::Tensor> outputs;
  for (int64_t first = 0; first < T; first += block) {
    const int64_t n = std::min(block, T - first);
    outputs.push_back(attend(q.narrow(1, first, n), keys, values, starts + first));
  }
  const at::Tensor out = outputs.size() == 1 ? outputs.front() : at::cat(outputs, 1);
  return at::linear(out.reshape({B, T, c.q_dim()}), w.wo);
}

/// Causal GQA attention of queries q [B, n, Hq, d] whose first token sits at position first_position[b]
/// ([B, 1]) over the cached keys [B, Hkv, d, S] and values [B, Hkv, S, d]. Without copying K/V per query
/// head: the g query heads of KV head j become g·n rows against it. Returns [B, n, Hq·d].
at::Tensor Decoder::State::attend(const at::Tensor& q, const at::Tensor& keys, const at::Tensor& values,
                                  const at::Tensor& first_position) const {
  const int64_t B = q.size(0), n = q.size(1), d = config.head_dim, Hkv = config.n_kv_heads, g = config.n_heads / Hkv;
  const int64_t slots = keys.size(-1);
  const at::Tensor grouped = q.reshape({B, n, Hkv, g, d}).permute({0, 2, 3, 1, 4}).reshape({B, Hkv, g * n, d});
  at::Tensor scores = at::matmul(grouped, keys).mul(1.0 / std::sqrt(static_cast<double>(d))).view({B, Hkv, g, n, slots});
  // Token t of row b sits at position first_position[b] + t and may read slots up to there.
  const at::Tensor limit = first_position + at::arange(n, at::kLong).view({1, n});
  const at::Tensor future = at::arange(slots, at::kLong).view({1, 1, slots}) > limit.unsqueeze(-1);  // [B,n,S]
  scores = scores.masked_fill(future.to(device).view({B, 1, 1, n, slots}), -std::numeric_limits<double>::infinity());
  const at::Tensor probs = at::softmax(scores, -1, at::kFloat).to(dtype).view({B, Hkv, g * n, slots});
  return at::matmul(probs, values).view({B, Hkv, g, n, d}).permute({0, 3, 1, 2, 4}).reshape({B, n, config.q_dim()});
}

/// Attention of the single sequence's new tokens q [1, T, Hq, d], k and v [1, T, Hkv, d] through the external
/// cache, on float32 host copies. Returns [1, T, Hq·d] in the model's dtype and device.
at::Tensor Decoder::State::attend_external(int layer, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) const {
  const int64_t T = q.size(1);
  auto host = [](const at::Tensor& x) { return x[0].to(at::kFloat).cpu().contiguous(); };
  const at::Tensor q_host = host(q), k_host = host(k), v_host = host(v);
  at::Tensor out = at::empty({1, T, config.q_dim()}, at::kFloat);
  kv_attention->attend(layer, positions.front(), static_cast<int>(T), q_host.data_ptr<float>(), k_host.data_ptr<float>(),
                       v_host.data_ptr<float>(), out.data_ptr<float>());
  return out.to(at::TensorOptions(dtype).device(device));
}

/// SwiGLU: down(silu(gate h) * up h).
at::Tensor Decoder::State::feed_forward(int layer, const at::Tensor& x) const {
  const LayerWeights& w = layers[static_cast<size_t>(layer)];
  const at::Tensor h = rms_norm(x, w.ffn_norm, config.rms_eps);
  return at::linear(at::silu(at::linear(h, w.w_gate)) * at::linear(h, w.w_up), w.w_down);
}

at::Tensor Decoder::State::logits(const at::Tensor& hidden) const {
  return at::linear(rms_norm(hidden, final_norm, config.rms_eps), classifier).to(at::kFloat);
}

/// Embeds and runs every layer over the padded batch; returns the final hidden states [B, T, dim] (before
/// the final norm) and advances the positions.
at::Tensor Decoder::State::run_layers(const std::vector<std::vector<int>>& tokens, CaptureSink* sink) {
  const ModelConfig& c = config;
  const int64_t B = static_cast<int64_t>(tokens.size());
  if (B != static_cast<int64_t>(positions.size())) {
    throw std::invalid_argument("Decoder: " + std::to_string(B) + " token lists for a batch of " + std::to_string(positions.size()));
  }
  std::vector<int64_t> lengths;
  int64_t T = 0, slots = 0, highest_position = 0;
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = static_cast<int64_t>(tokens[static_cast<size_t>(b)].size()), start = positions[static_cast<size_t>(b)];
    if (start + n > c.max_seq_len) {
      throw std::invalid_argument("Decoder: " + std::to_string(start + n) + " tokens exceed the context of " + std::to_string(c.max_seq_len));
    }
    for (int id : tokens[static_cast<size_t>(b)]) {
      if (id < 0 || id >= c.vocab_size) throw std::invalid_argument("Decoder: token id " + std::to_string(id) + " out of range");
    }
    lengths.push_back(n);
    T = std::max(T, n);
    slots = std::max(slots, start + n);
  }
  if (T == 0) throw std::invalid_argument("Decoder: no tokens");
  if (kv_attention && B != 1) throw std::invalid_argument("Decoder: external KV attention needs a batch of one");
  for (int64_t b = 0; b < B; ++b) highest_position = std::max<int64_t>(highest_position, positions[static_cast<size_t>(b)] + T);
  ensure_capacity(slots);
  ensure_rope(highest_position);  // padding positions too: they are computed, then ignored

  std::vector<int64_t> ids(static_cast<size_t>(B * T), 0), rope_index(static_cast<size_t>(B * T));
  for (int64_t b = 0; b < B; ++b) {
    const auto& row = tokens[static_cast<size_t>(b)];
    std::copy(row.begin(), row.end(), ids.begin() + b * T);
    for (int64_t t = 0; t < T; ++t) rope_index[static_cast<size_t>(b * T + t)] = positions[static_cast<size_t>(b)] + t;
  }
  const at::Tensor index = at::tensor(rope_index, at::kLong).to(device);
  const int64_t half = c.head_dim / 2;
  const at::Tensor cos = rope_cos.index_select(0, index).view({B, T, 1, half}).to(dtype);
  const at::Tensor sin = rope_sin.index_select(0, index).view({B, T, 1, half}).to(dtype);
  at::Tensor x = embedding.index_select(0, at::tensor(ids, at::kLong).to(device)).view({B, T, c.dim});
  for (int layer = 0; layer < c.n_layers; ++layer) {
    x = x + attention(layer, x, cos, sin, lengths, sink);
    x = x + feed_forward(layer, x);
  }
  for (int64_t b = 0; b < B; ++b) positions[static_cast<size_t>(b)] += static_cast<int>(lengths[static_cast<size_t>(b)]);
  return x;
}

Decoder::Decoder(const ModelConfig& config, const ModelWeights& weights, const DecoderOptions& options)
    : state_(std::make_unique<State>()) {
  State& s = *state_;
  validate_config(config, weights.source());
  s.config = config;
  s.options = options;
  if (options.dtype != DType::kFloat32 && options.dtype != DType::kBFloat16) {
    throw UsageError("--dtype " + std::string(dtype_name(options.dtype)) + ": expected float32 or bfloat16");
  }
  s.dtype = scalar_type(options.dtype);
  s.device = parse_device(options.device);
  keep_freed_buffers();
  s.inv_freq = inverse_frequencies(config);
  c10::InferenceMode inference;
  s.load(weights);
  reset(1);
}

Decoder::~Decoder() = default;
Decoder::Decoder(Decoder&&) noexcept = default;
Decoder& Decoder::operator=(Decoder&&) noexcept = default;

const ModelConfig& Decoder::config() const { return state_->config; }
const DecoderOptions& Decoder::options() const { return state_->options; }
int Decoder::batch_size() const { return static_cast<int>(state_->positions.size()); }
int Decoder::position(int sequence) const { return state_->positions.at(static_cast<size_t>(sequence)); }

void Decoder::reset(int batch_size) {
  if (batch_size <= 0) throw std::invalid_argument("Decoder::reset: batch size must be positive");
  State& s = *state_;
  s.positions.assign(static_cast<size_t>(batch_size), 0);
  s.k_cache.assign(static_cast<size_t>(s.config.n_layers), at::Tensor());
  s.v_cache.assign(static_cast<size_t>(s.config.n_layers), at::Tensor());
  s.capacity = 0;
}

std::vector<std::vector<float>> Decoder::forward_batch(const std::vector<std::vector<int>>& tokens, CaptureSink* sink) {
  State& s = *state_;
  c10::InferenceMode inference;
  const at::Tensor hidden = s.run_layers(tokens, sink);
  std::vector<std::vector<float>> result(tokens.size());
  for (size_t b = 0; b < tokens.size(); ++b) {
    if (tokens[b].empty()) continue;
    // Only the last token's logits: generation needs nothing else, and it saves a [T, V] product.
    const at::Tensor row = s.logits(hidden[static_cast<int64_t>(b)][static_cast<int64_t>(tokens[b].size()) - 1]).cpu().contiguous();
    result[b].assign(row.data_ptr<float>(), row.data_ptr<float>() + row.numel());
  }
  return result;
}

std::vector<float> Decoder::forward(const std::vector<int>& tokens, CaptureSink* sink) {
  if (batch_size() != 1) throw std::invalid_argument("Decoder::forward: the batch holds " + std::to_string(batch_size()) + " sequences");
  return forward_batch({tokens}, sink).front();
}

std::vector<double> Decoder::next_token_log_probs(const std::vector<int>& tokens) {
  State& s = *state_;
  c10::InferenceMode inference;
  reset(1);
  const at::Tensor hidden = s.run_layers({tokens}, nullptr)[0];  // [T, dim]
  const int64_t scored = static_cast<int64_t>(tokens.size()) - 1;
  std::vector<double> result;
  result.reserve(static_cast<size_t>(std::max<int64_t>(scored, 0)));
  for (int64_t first = 0; first < scored; first += kScoringBlock) {
    const int64_t n = std::min(kScoringBlock, scored - first);
    const at::Tensor log_probs = at::log_softmax(s.logits(hidden.narrow(0, first, n)), -1);
    const std::vector<int64_t> next(tokens.begin() + first + 1, tokens.begin() + first + 1 + n);
    const at::Tensor picked = log_probs.gather(1, at::tensor(next, at::kLong).to(s.device).view({n, 1})).cpu().to(at::kDouble);
    result.insert(result.end(), picked.data_ptr<double>(), picked.data_ptr<double>() + n);
  }
  return result;
}

void Decoder::next_token_distributions(const std::vector<int>& tokens,
                                       const std::function<void(int, int, const float*)>& on_block) {
  reset(1);
  forward_distributions(tokens, on_block);
}

void Decoder::forward_distributions(const std::vector<int>& tokens,
                                    const std::function<void(int, int, const float*)>& on_block) {
  State& s = *state_;
  c10::InferenceMode inference;
  if (batch_size() != 1) throw std::invalid_argument("Decoder::forward_distributions: the batch holds " + std::to_string(batch_size()) + " sequences");
  const at::Tensor hidden = s.run_layers({tokens}, nullptr)[0];  // [T, dim]
  const int64_t positions = static_cast<int64_t>(tokens.size());
  for (int64_t first = 0; first < positions; first += kScoringBlock) {
    const int64_t n = std::min(kScoringBlock, positions - first);
    const at::Tensor log_probs = at::log_softmax(s.logits(hidden.narrow(0, first, n)), -1).cpu().contiguous();
    on_block(static_cast<int>(first), static_cast<int>(n), log_probs.data_ptr<float>());
  }
}

void Decoder::set_kv_attention(KvAttention* attention) { state_->kv_attention = attention; }

namespace {

/// Rows [0, filled) of one sequence's cache; an empty [0, Hkv, d] tensor before the first forward, when the
/// cache is not allocated yet.
at::Tensor cached_rows(const std::vector<at::Tensor>& cache, int layer, int sequence, int filled, const ModelConfig& c,
                       at::ScalarType dtype, at::Device device) {
  const at::Tensor& layer_cache = cache.at(static_cast<size_t>(layer));
  if (!layer_cache.defined()) return at::empty({0, c.n_kv_heads, c.head_dim}, at::TensorOptions(dtype).device(device));
  return layer_cache[sequence].narrow(0, 0, filled);
}

}  // namespace

at::Tensor Decoder::cached_keys(int layer, int sequence) const {
  const State& s = *state_;
  return cached_rows(s.k_cache, layer, sequence, position(sequence), s.config, s.dtype, s.device);
}
at::Tensor Decoder::cached_values(int layer, int sequence) const {
  const State& s = *state_;
  return cached_rows(s.v_cache, layer, sequence, position(sequence), s.config, s.dtype, s.device);
}

}  // namespace oscar::model
