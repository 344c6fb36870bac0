// The only translation unit of lib/model that includes LibTorch (ATen) headers.
#include "model/decoder.h"

#include <ATen/ATen.h>
#include <c10/core/InferenceMode.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>

namespace oscar::model {
namespace {

/// Hands a weight vector to a tensor without copying: the tensor's deleter owns the vector.
at::Tensor adopt(std::vector<float>&& values, at::IntArrayRef shape) {
  auto* owned = new std::vector<float>(std::move(values));
  return at::from_blob(owned->data(), shape, [owned](void*) { delete owned; }, at::TensorOptions(at::kFloat));
}

at::Tensor rms_norm(const at::Tensor& x, const at::Tensor& weight, float eps) {
  return x * at::rsqrt(x.pow(2).mean(-1, /*keepdim=*/true) + eps) * weight;
}

/// RoPE on adjacent pairs (x[2i], x[2i+1]) of every head, as llama2.c's run.c (the "interleaved" layout;
/// Hugging Face checkpoints use rotate_half instead). x [T, H, d]; cos/sin [T, 1, d/2].
at::Tensor rope_interleaved(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const auto T = x.size(0), H = x.size(1), d = x.size(2);
  const at::Tensor pairs = x.view({T, H, d / 2, 2});
  const at::Tensor x0 = pairs.select(-1, 0), x1 = pairs.select(-1, 1);
  return at::stack({x0 * cos - x1 * sin, x0 * sin + x1 * cos}, -1).view({T, H, d});
}

/// cos/sin tables [seq_len, d/2], computed in float exactly as run.c does (freq = 1 / theta^(2i/d),
/// angle = pos · freq in float), so that greedy decoding reproduces llama2.c's output token for token.
std::pair<at::Tensor, at::Tensor> rope_tables(int seq_len, int head_dim, float theta) {
  const int half = head_dim / 2;
  at::Tensor cos = at::empty({seq_len, half}, at::kFloat), sin = at::empty({seq_len, half}, at::kFloat);
  float* c = cos.data_ptr<float>();
  float* s = sin.data_ptr<float>();
  for (int pos = 0; pos < seq_len; ++pos) {
    for (int i = 0; i < half; ++i) {
      const float freq = 1.0f / std::pow(theta, static_cast<float>(2 * i) / static_cast<float>(head_dim));
      const float angle = static_cast<float>(pos) * freq;
      c[pos * half + i] = std::cos(angle);
      s[pos * half + i] = std::sin(angle);
    }
  }
  return {cos, sin};
}

}  // namespace

struct Decoder::State {
  ModelConfig config;
  at::Tensor embedding, classifier, rms_final;             // [V, dim], [V, dim], [dim]
  at::Tensor rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3;  // stacked over layers
  at::Tensor rope_cos, rope_sin;                            // [seq_len, d/2]
  at::Tensor k_cache, v_cache;                              // [layers, seq_len, Hkv, d]
  int position = 0;

  at::Tensor attention(int layer, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                       CaptureSink* sink);
  at::Tensor feed_forward(int layer, const at::Tensor& x) const;
};

/// One attention block for T new tokens at positions [position, position + T): projections, RoPE, capture,
/// cache append, causal attention over the whole cache (GQA: query head h reads KV head h / group).
at::Tensor Decoder::State::attention(int layer, const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin,
                                     CaptureSink* sink) {
  const ModelConfig& c = config;
  const int64_t T = x.size(0), d = c.head_dim(), S = position + T;
  const at::Tensor h = rms_norm(x, rms_att[layer], c.rms_eps);
  const at::Tensor q = rope_interleaved(at::linear(h, wq[layer]).view({T, c.n_heads, d}), cos, sin);
  const at::Tensor k = rope_interleaved(at::linear(h, wk[layer]).view({T, c.n_kv_heads, d}), cos, sin);
  const at::Tensor v = at::linear(h, wv[layer]).view({T, c.n_kv_heads, d});
  if (sink) sink->on_layer(layer, q, k, v);
  k_cache[layer].narrow(0, position, T).copy_(k);
  v_cache[layer].narrow(0, position, T).copy_(v);

  const int64_t group = c.n_heads / c.n_kv_heads;
  const at::Tensor keys = k_cache[layer].narrow(0, 0, S).repeat_interleave(group, 1);    // [S, Hq, d]
  const at::Tensor values = v_cache[layer].narrow(0, 0, S).repeat_interleave(group, 1);  // [S, Hq, d]
  at::Tensor scores = at::matmul(q.permute({1, 0, 2}), keys.permute({1, 2, 0})) / std::sqrt(static_cast<double>(d));
  // Token t (absolute position + t) may not see cache slots s > position + t.
  const at::Tensor future = at::ones({T, S}, at::kBool).triu(position + 1);
  scores = scores.masked_fill(future, -std::numeric_limits<float>::infinity()).softmax(-1);  // [Hq, T, S]
  const at::Tensor out = at::matmul(scores, values.permute({1, 0, 2})).permute({1, 0, 2}).reshape({T, c.dim});
  return at::linear(out, wo[layer]);
}

/// SwiGLU: w2(silu(w1 h) * w3 h).
at::Tensor Decoder::State::feed_forward(int layer, const at::Tensor& x) const {
  const at::Tensor h = rms_norm(x, rms_ffn[layer], config.rms_eps);
  return at::linear(at::silu(at::linear(h, w1[layer])) * at::linear(h, w3[layer]), w2[layer]);
}

Decoder::Decoder(Llama2cModel model) : state_(std::make_unique<State>()) {
  State& s = *state_;
  const ModelConfig& c = s.config = model.config;
  Llama2cWeights& w = model.weights;
  const int64_t L = c.n_layers, dim = c.dim, kv = c.kv_dim(), hid = c.hidden_dim;
  s.embedding = adopt(std::move(w.token_embedding), {c.vocab_size, dim});
  s.classifier = c.shared_classifier ? s.embedding : adopt(std::move(w.classifier), {c.vocab_size, dim});
  s.rms_final = adopt(std::move(w.rms_final), {dim});
  s.rms_att = adopt(std::move(w.rms_att), {L, dim});
  s.wq = adopt(std::move(w.wq), {L, dim, dim});
  s.wk = adopt(std::move(w.wk), {L, kv, dim});
  s.wv = adopt(std::move(w.wv), {L, kv, dim});
  s.wo = adopt(std::move(w.wo), {L, dim, dim});
  s.rms_ffn = adopt(std::move(w.rms_ffn), {L, dim});
  s.w1 = adopt(std::move(w.w1), {L, hid, dim});
  s.w2 = adopt(std::move(w.w2), {L, dim, hid});
  s.w3 = adopt(std::move(w.w3), {L, hid, dim});
  std::tie(s.rope_cos, s.rope_sin) = rope_tables(c.seq_len, c.head_dim(), c.rope_theta);
  s.k_cache = at::zeros({L, c.seq_len, c.n_kv_heads, c.head_dim()}, at::kFloat);
  s.v_cache = at::zeros_like(s.k_cache);
}

Decoder::~Decoder() = default;
Decoder::Decoder(Decoder&&) noexcept = default;
Decoder& Decoder::operator=(Decoder&&) noexcept = default;

const ModelConfig& Decoder::config() const { return state_->config; }
int Decoder::position() const { return state_->position; }
void Decoder::reset() { state_->position = 0; }  // stale cache slots are masked out by position

at::Tensor Decoder::cached_keys(int layer) const { return state_->k_cache[layer].narrow(0, 0, state_->position); }
at::Tensor Decoder::cached_values(int layer) const { return state_->v_cache[layer].narrow(0, 0, state_->position); }

std::vector<float> Decoder::forward(const std::vector<int>& tokens, CaptureSink* sink) {
  State& s = *state_;
  const ModelConfig& c = s.config;
  const int64_t T = static_cast<int64_t>(tokens.size());
  if (T == 0) throw std::invalid_argument("Decoder::forward: no tokens");
  if (s.position + T > c.seq_len)
    throw std::invalid_argument("Decoder::forward: " + std::to_string(s.position + T) + " tokens exceed seq_len " +
                                std::to_string(c.seq_len));
  std::vector<int64_t> ids(tokens.begin(), tokens.end());
  for (int64_t id : ids)
    if (id < 0 || id >= c.vocab_size) throw std::invalid_argument("Decoder::forward: token id " + std::to_string(id) + " out of range");

  c10::InferenceMode inference;  // no autograd bookkeeping
  at::Tensor x = s.embedding.index_select(0, at::tensor(ids, at::kLong));  // [T, dim]
  const at::Tensor cos = s.rope_cos.narrow(0, s.position, T).unsqueeze(1);
  const at::Tensor sin = s.rope_sin.narrow(0, s.position, T).unsqueeze(1);
  for (int layer = 0; layer < c.n_layers; ++layer) {
    x = x + s.attention(layer, x, cos, sin, sink);
    x = x + s.feed_forward(layer, x);
  }
  s.position += static_cast<int>(T);
  // Only the last token's logits: generation needs nothing else, and it saves a [T, V] product.
  const at::Tensor logits = at::linear(rms_norm(x[T - 1], s.rms_final, c.rms_eps), s.classifier).contiguous();
  return std::vector<float>(logits.data_ptr<float>(), logits.data_ptr<float>() + logits.numel());
}

std::vector<int> Decoder::generate_greedy(const std::vector<int>& prompt, int max_new_tokens, int stop_token,
                                          CaptureSink* sink) {
  reset();
  std::vector<int> generated;
  std::vector<float> logits = forward(prompt, sink);
  while (static_cast<int>(generated.size()) < max_new_tokens) {
    // First maximum on ties, as run.c's argmax.
    const int next = static_cast<int>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    generated.push_back(next);
    if (next == stop_token || position() >= config().seq_len) break;
    if (static_cast<int>(generated.size()) < max_new_tokens) logits = forward({next}, sink);
  }
  return generated;
}

}  // namespace oscar::model
