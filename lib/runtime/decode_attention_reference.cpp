// The scalar reference of decode attention over the mixed cache (decode_attention.h), written to read like
// the spec, in double.
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/decode_attention.h"

namespace oscar::runtime {

namespace {

/// A partial softmax over some rows: m = max score, l = Σ e^(s−m), acc = Σ e^(s−m)·v.
struct SoftmaxState {
  double m = -std::numeric_limits<double>::infinity();
  double l = 0.0;
  std::vector<double> acc;
};

/// Softmax state over rows given by their scores and a function writing row j's value vector.
template <typename ValueRow>
SoftmaxState softmax_pass(const std::vector<double>& scores, int d, ValueRow value_row) {
  SoftmaxState state;
  state.acc.assign(std::size_t(d), 0.0);
  for (double s : scores) state.m = std::max(state.m, s);
  std::vector<float> v(static_cast<std::size_t>(d));
  for (std::size_t j = 0; j < scores.size(); ++j) {
    const double p = std::exp(scores[j] - state.m);
    state.l += p;
    value_row(int(j), v.data());
    for (int e = 0; e < d; ++e) state.acc[std::size_t(e)] += p * double(v[std::size_t(e)]);
  }
  return state;
}

/// Log-sum-exp merge of two partial states.
SoftmaxState merge(const SoftmaxState& a, const SoftmaxState& b) {
  if (a.l == 0.0) return b;
  if (b.l == 0.0) return a;
  SoftmaxState out;
  out.m = std::max(a.m, b.m);
  const double wa = std::exp(a.m - out.m), wb = std::exp(b.m - out.m);
  out.l = a.l * wa + b.l * wb;
  out.acc.resize(a.acc.size());
  for (std::size_t e = 0; e < a.acc.size(); ++e) out.acc[e] = a.acc[e] * wa + b.acc[e] * wb;
  return out;
}

}  // namespace

void attention_detail::check_decode_arguments(const MixedKvCache& cache, int q_heads) {
  const int hkv = cache.config().kv_heads;
  if (cache.size() == 0) throw std::invalid_argument("decode attention: empty cache");
  if (q_heads <= 0 || q_heads % hkv != 0) {
    throw std::invalid_argument("decode attention: " + std::to_string(q_heads) + " query heads for " +
                                std::to_string(hkv) + " KV heads");
  }
}

void decode_attention_reference(const MixedKvCache& cache, const float* q, int q_heads, float* out, double scale) {
  const MixedCacheConfig& config = cache.config();
  const int d = config.head_dim, hkv = config.kv_heads;
  attention_detail::check_decode_arguments(cache, q_heads);
  if (scale <= 0.0) scale = 1.0 / std::sqrt(double(d));
  const int group = q_heads / hkv;
  const Rotation& rk = cache.key_rotation();
  const Rotation& rv = cache.value_rotation();

  for (int h = 0; h < q_heads; ++h) {
    const int g = h / group;  // the KV head this query head reads
    const float* qh = q + std::size_t(h) * d;

    // q·R_K: keys are stored rotated, so (q·R_K)·(k·R_K) = q·k.
    std::vector<double> qr(static_cast<std::size_t>(d));
    for (int j = 0; j < d; ++j) {
      if (rk.is_identity()) {
        qr[std::size_t(j)] = qh[j];
      } else {
        double sum = 0.0;
        for (int i = 0; i < d; ++i) sum += double(qh[i]) * double(rk.matrix(g)[std::size_t(i) * d + j]);
        qr[std::size_t(j)] = sum;
      }
    }
    const auto score = [&](const float* key) {
      double s = 0.0;
      for (int e = 0; e < d; ++e) s += qr[std::size_t(e)] * double(key[e]);
      return s * scale;
    };

    // Pass 1: the full-precision rows (sink, then recent window).
    std::vector<float> row(static_cast<std::size_t>(d));
    std::vector<double> scores;
    for (int i = 0; i < cache.full_precision_size(); ++i) {
      cache.full_precision_row(KvKind::kKey, g, i, row.data());
      scores.push_back(score(row.data()));
    }
    const SoftmaxState full = softmax_pass(scores, d, [&](int i, float* v) {
      cache.full_precision_row(KvKind::kValue, g, i, v);
    });

    // Pass 2: the INT2 history, dequantised one row at a time.
    scores.clear();
    for (int i = 0; i < cache.int2_size(); ++i) {
      dequantize_rows_reference(cache.int2_row(KvKind::kKey, g, i), 1, cache.int2_config(KvKind::kKey), row.data());
      scores.push_back(score(row.data()));
    }
    const SoftmaxState int2 = softmax_pass(scores, d, [&](int i, float* v) {
      dequantize_rows_reference(cache.int2_row(KvKind::kValue, g, i), 1, cache.int2_config(KvKind::kValue), v);
    });

    // Merge, normalise, un-rotate: out = (acc / l)·R_Vᵀ.
    const SoftmaxState all = merge(full, int2);
    std::vector<double> o(static_cast<std::size_t>(d));
    for (int e = 0; e < d; ++e) o[std::size_t(e)] = all.acc[std::size_t(e)] / all.l;
    float* oh = out + std::size_t(h) * d;
    for (int j = 0; j < d; ++j) {
      if (rv.is_identity()) {
        oh[j] = float(o[std::size_t(j)]);
      } else {
        double sum = 0.0;
        for (int i = 0; i < d; ++i) sum += o[std::size_t(i)] * double(rv.matrix(g)[std::size_t(j) * d + i]);
        oh[j] = float(sum);
      }
    }
  }
}

}  // namespace oscar::runtime
