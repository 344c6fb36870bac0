#include "verify/quantizer_kv_attention.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "runtime/mixed_cache.h"

namespace oscar::verify {

QuantizerKvAttention::QuantizerKvAttention(const QuantizerWindows& windows, const runtime::KvQuantizer& key_quantizer,
                                           const runtime::KvQuantizer& value_quantizer, int q_heads, int kv_heads,
                                           int head_dim)
    : windows_(windows), key_quantizer_(key_quantizer), value_quantizer_(value_quantizer), q_heads_(q_heads),
      kv_heads_(kv_heads), head_dim_(head_dim) {}

int QuantizerKvAttention::compressed_tokens(int tokens) const {
  const int step = std::lcm(std::lcm(runtime::kDemotionStep, key_quantizer_.granule()), value_quantizer_.granule());
  const int beyond = tokens - windows_.sink_tokens - windows_.recent_tokens;
  return beyond >= step ? step * (beyond / step) : 0;
}

double QuantizerKvAttention::compressed_bits_per_element() const { return elements_ > 0 ? bits_ / elements_ : 0.0; }

void QuantizerKvAttention::attend(int layer, int start, int tokens, const float* q, const float* k, const float* v,
                                  float* out) {
  if (start != 0) throw std::logic_error("QuantizerKvAttention: a sequence must come in one call");
  if (layer == 0) bits_ = elements_ = 0;
  const int d = head_dim_, sink = std::min(windows_.sink_tokens, tokens), segment = tokens - sink;
  const size_t row = size_t(kv_heads_) * size_t(d), q_row = size_t(q_heads_) * size_t(d);
  std::vector<float> k_hat(size_t(segment) * row), v_hat(size_t(segment) * row);
  // The rows compressed once the whole sequence is in the cache (whole granules, as the quantizers require);
  // earlier positions see a prefix of them. A whole-sequence method (eOptShrinkQ) fits exactly that segment.
  const int whole = std::min(segment, compressed_tokens(tokens));
  if (whole > 0) {
    const double key_bits = key_quantizer_.reconstruct(k + size_t(sink) * row, whole, kv_heads_, d, k_hat.data());
    const double value_bits = value_quantizer_.reconstruct(v + size_t(sink) * row, whole, kv_heads_, d, v_hat.data());
    bits_ += key_bits + value_bits;
    elements_ += 2.0 * double(whole) * double(row);
  }
  const int group = q_heads_ / kv_heads_;
  const double scale = 1.0 / std::sqrt(double(d));
  std::vector<double> scores(static_cast<size_t>(tokens)), sum(static_cast<size_t>(d));
  for (int t = 0; t < tokens; ++t) {
    const int compressed_end = t < prefill_tokens_ ? sink : sink + compressed_tokens(t + 1);
    for (int h = 0; h < q_heads_; ++h) {
      const int kv = h / group;
      const float* query = q + size_t(t) * q_row + size_t(h) * size_t(d);
      auto key_row = [&](int j) {
        return j >= sink && j < compressed_end ? &k_hat[size_t(j - sink) * row + size_t(kv) * size_t(d)] : k + size_t(j) * row + size_t(kv) * size_t(d);
      };
      auto value_row = [&](int j) {
        return j >= sink && j < compressed_end ? &v_hat[size_t(j - sink) * row + size_t(kv) * size_t(d)] : v + size_t(j) * row + size_t(kv) * size_t(d);
      };
      double max = -INFINITY;
      for (int j = 0; j <= t; ++j) {
        const float* key = key_row(j);
        double dot = 0;
        for (int i = 0; i < d; ++i) dot += double(query[i]) * double(key[i]);
        scores[size_t(j)] = dot * scale;
        max = std::max(max, scores[size_t(j)]);
      }
      double total = 0;
      std::fill(sum.begin(), sum.end(), 0.0);
      for (int j = 0; j <= t; ++j) {
        const double weight = std::exp(scores[size_t(j)] - max);
        total += weight;
        const float* value = value_row(j);
        for (int i = 0; i < d; ++i) sum[size_t(i)] += weight * double(value[i]);
      }
      float* result = out + size_t(t) * q_row + size_t(h) * size_t(d);
      for (int i = 0; i < d; ++i) result[i] = float(sum[size_t(i)] / total);
    }
  }
}

}  // namespace oscar::verify
