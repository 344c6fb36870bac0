#include "verify/quantizer_kv_attention.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>
#include <vector>

#include "core/parallel_for.h"
#include "runtime/mixed_cache.h"

namespace oscar::verify {

QuantizerKvAttention::QuantizerKvAttention(const QuantizerWindows& windows, const runtime::KvQuantizer& key_quantizer,
                                           const runtime::KvQuantizer& value_quantizer, int q_heads, int kv_heads,
                                           int head_dim, int threads)
    : windows_(windows), key_quantizer_(key_quantizer), value_quantizer_(value_quantizer), q_heads_(q_heads),
      kv_heads_(kv_heads), head_dim_(head_dim), threads_(std::max(1, threads)) {}

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
  // Per KV head, contiguous [T, d] copies of the full-precision and the reconstructed rows, so the inner
  // loops run over contiguous floats; query heads in parallel (each writes only its own output rows).
  const int group = q_heads_ / kv_heads_;
  const float scale = 1.0f / std::sqrt(float(d));
  std::vector<float> keys(size_t(kv_heads_) * 2 * size_t(tokens) * size_t(d)), values(keys.size());
  auto head_rows = [&](std::vector<float>& dst, const float* full, const std::vector<float>& hat, int kv) {
    float* fp_rows = dst.data() + size_t(kv) * 2 * size_t(tokens) * size_t(d);
    float* hat_rows = fp_rows + size_t(tokens) * size_t(d);
    for (int j = 0; j < tokens; ++j) {
      std::copy_n(full + size_t(j) * row + size_t(kv) * size_t(d), d, fp_rows + size_t(j) * size_t(d));
      const bool compressed = j >= sink && j < sink + whole;
      const float* source = compressed ? &hat[size_t(j - sink) * row + size_t(kv) * size_t(d)] : full + size_t(j) * row + size_t(kv) * size_t(d);
      std::copy_n(source, d, hat_rows + size_t(j) * size_t(d));
    }
  };
  for (int kv = 0; kv < kv_heads_; ++kv) {
    head_rows(keys, k, k_hat, kv);
    head_rows(values, v, v_hat, kv);
  }
  std::vector<int> compressed_end(static_cast<size_t>(tokens));  // per position: rows [sink, end) are compressed
  for (int t = 0; t < tokens; ++t) compressed_end[size_t(t)] = t < prefill_tokens_ ? sink : sink + compressed_tokens(t + 1);
  parallel_for(q_heads_, threads_, [&](int h) {
    const int kv = h / group;
    const float* key_fp = keys.data() + size_t(kv) * 2 * size_t(tokens) * size_t(d);
    const float* key_hat = key_fp + size_t(tokens) * size_t(d);
    const float* value_fp = values.data() + size_t(kv) * 2 * size_t(tokens) * size_t(d);
    const float* value_hat = value_fp + size_t(tokens) * size_t(d);
    std::vector<float> scores(static_cast<size_t>(tokens));
    std::vector<double> sum(static_cast<size_t>(d));
    for (int t = 0; t < tokens; ++t) {
      const int end = compressed_end[size_t(t)];
      const float* query = q + size_t(t) * q_row + size_t(h) * size_t(d);
      float max = -INFINITY;
      for (int j = 0; j <= t; ++j) {
        const float* key = (j >= sink && j < end ? key_hat : key_fp) + size_t(j) * size_t(d);
        float dot = 0;
        for (int i = 0; i < d; ++i) dot += query[i] * key[i];
        scores[size_t(j)] = dot * scale;
        max = std::max(max, scores[size_t(j)]);
      }
      double total = 0;
      std::fill(sum.begin(), sum.end(), 0.0);
      for (int j = 0; j <= t; ++j) {
        const double weight = std::exp(double(scores[size_t(j)] - max));
        total += weight;
        const float* value = (j >= sink && j < end ? value_hat : value_fp) + size_t(j) * size_t(d);
        for (int i = 0; i < d; ++i) sum[size_t(i)] += weight * double(value[i]);
      }
      float* result = out + size_t(t) * q_row + size_t(h) * size_t(d);
      for (int i = 0; i < d; ++i) result[i] = float(sum[size_t(i)] / total);
    }
  });
}

}  // namespace oscar::verify
