// Decode attention over the mixed cache (lib/runtime/decode_attention.h) against dense softmax attention
// written out here in double over [full-precision rows ‖ dequantised rows]; the fast path against the
// reference; rotation invariance (q·R)·(k·R) = q·k; teacher-forced attention against step-by-step decode.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#ifndef OSCAR_TESTS_RUNTIME_ONLY  // a GPU machine may build the runtime alone, without lib/io
#include "io/rotation_set.h"
#endif
#include "runtime/decode_attention.h"
#include "runtime/int2_quantize.h"
#include "runtime/mixed_cache.h"
#include "runtime/rotation.h"
#include "runtime_test_support.h"
#include "runtime/teacher_forced.h"

namespace oscar::runtime {
namespace {

using test::random_orthogonal;
using test::random_values;

/// Keys with a few large outlier channels and a per-token scale, values plain Gaussian: attention that is
/// neither uniform nor one-hot.
struct Sequence {
  int tokens = 0, q_heads = 0, kv_heads = 0, d = 0;
  std::vector<float> q, k, v;
  const float* q_at(int t) const { return q.data() + std::size_t(t) * q_heads * d; }
  const float* k_at(int t) const { return k.data() + std::size_t(t) * kv_heads * d; }
  const float* v_at(int t) const { return v.data() + std::size_t(t) * kv_heads * d; }
};

Sequence make_sequence(int tokens, int q_heads, int kv_heads, int d, std::uint32_t seed) {
  Sequence s{tokens, q_heads, kv_heads, d, random_values(std::size_t(tokens) * q_heads * d, seed, 1.5f),
             random_values(std::size_t(tokens) * kv_heads * d, seed + 1, 1.5f),
             random_values(std::size_t(tokens) * kv_heads * d, seed + 2)};
  for (std::size_t i = 0; i < s.k.size(); i += std::size_t(d)) {
    s.k[i + 3] *= 6.0f;  // an outlier channel
    s.k[i + std::size_t(d) / 2] += 4.0f;
  }
  return s;
}

/// Dense softmax attention in double of one query head over explicit rows: out = softmax(q·K/√d)·V.
std::vector<double> dense_attention(const std::vector<double>& q, const std::vector<std::vector<double>>& keys,
                                    const std::vector<std::vector<double>>& values, double scale) {
  const std::size_t d = q.size();
  std::vector<double> scores(keys.size());
  double m = -1e300;
  for (std::size_t j = 0; j < keys.size(); ++j) {
    double s = 0.0;
    for (std::size_t e = 0; e < d; ++e) s += q[e] * keys[j][e];
    scores[j] = s * scale;
    m = std::max(m, scores[j]);
  }
  double l = 0.0;
  std::vector<double> out(d, 0.0);
  for (std::size_t j = 0; j < keys.size(); ++j) {
    const double p = std::exp(scores[j] - m);
    l += p;
    for (std::size_t e = 0; e < d; ++e) out[e] += p * values[j][e];
  }
  for (auto& x : out) x /= l;
  return out;
}

/// x·M (transpose: x·Mᵀ) in double for a row-major [d, d] float matrix.
std::vector<double> times(const std::vector<double>& x, const float* m, bool transpose) {
  const std::size_t d = x.size();
  std::vector<double> y(d, 0.0);
  for (std::size_t j = 0; j < d; ++j) {
    for (std::size_t i = 0; i < d; ++i) y[j] += x[i] * double(transpose ? m[j * d + i] : m[i * d + j]);
  }
  return y;
}

/// Dense attention over what the cache holds: its full-precision rows and its INT2 rows dequantised with
/// the reference dequantiser, gathered here; q rotated and the output un-rotated here, in double.
std::vector<double> dense_over_cache(const MixedKvCache& cache, const float* q, int q_heads) {
  const int d = cache.config().head_dim, group = q_heads / cache.config().kv_heads;
  std::vector<double> out;
  std::vector<float> row(static_cast<std::size_t>(d));
  for (int h = 0; h < q_heads; ++h) {
    const int g = h / group;
    std::vector<std::vector<double>> keys, values;
    for (KvKind kind : {KvKind::kKey, KvKind::kValue}) {
      auto& rows = kind == KvKind::kKey ? keys : values;
      for (int i = 0; i < cache.full_precision_size(); ++i) {
        cache.full_precision_row(kind, g, i, row.data());
        rows.emplace_back(row.begin(), row.end());
      }
      for (int i = 0; i < cache.int2_size(); ++i) {
        dequantize_rows_reference(cache.int2_row(kind, g, i), 1, cache.int2_config(kind), row.data());
        rows.emplace_back(row.begin(), row.end());
      }
    }
    std::vector<double> qh(q + std::size_t(h) * d, q + std::size_t(h + 1) * d);
    if (!cache.key_rotation().is_identity()) qh = times(qh, cache.key_rotation().matrix(g), false);
    std::vector<double> o = dense_attention(qh, keys, values, 1.0 / std::sqrt(double(d)));
    if (!cache.value_rotation().is_identity()) o = times(o, cache.value_rotation().matrix(g), true);
    out.insert(out.end(), o.begin(), o.end());
  }
  return out;
}

/// max over query heads and cached rows of |scale·(q·R_K)·k̃| (dequantised or full precision), in double.
double max_logit(const MixedKvCache& cache, const float* q, int q_heads) {
  const int d = cache.config().head_dim, group = q_heads / cache.config().kv_heads;
  std::vector<float> row(static_cast<std::size_t>(d));
  double worst = 0.0;
  for (int h = 0; h < q_heads; ++h) {
    const int g = h / group;
    std::vector<double> qh(q + std::size_t(h) * d, q + std::size_t(h + 1) * d);
    if (!cache.key_rotation().is_identity()) qh = times(qh, cache.key_rotation().matrix(g), false);
    for (int i = 0; i < cache.full_precision_size() + cache.int2_size(); ++i) {
      if (i < cache.full_precision_size()) {
        cache.full_precision_row(KvKind::kKey, g, i, row.data());
      } else {
        dequantize_rows_reference(cache.int2_row(KvKind::kKey, g, i - cache.full_precision_size()), 1,
                                  cache.int2_config(KvKind::kKey), row.data());
      }
      double s = 0.0;
      for (int e = 0; e < d; ++e) s += qh[std::size_t(e)] * row[std::size_t(e)];
      worst = std::max(worst, std::fabs(s) / std::sqrt(double(d)));
    }
  }
  return worst;
}

/// The documented float32 tolerance of the fast paths against the double reference (decode_attention.h).
constexpr double kFastTolerance = 4e-7;

/// max |a − b| / max(max |b|, floor).
template <typename A, typename B>
double relative_error(const A& a, const B& b, double floor = 1e-3) {
  double diff = 0.0, scale = floor;
  for (std::size_t i = 0; i < b.size(); ++i) {
    diff = std::max(diff, std::fabs(double(a[i]) - double(b[i])));
    scale = std::max(scale, std::fabs(double(b[i])));
  }
  return diff / scale;
}

struct Case {
  const char* name;
  MixedCacheConfig config;
  int q_heads;
};

std::vector<Case> cases() {
  std::vector<Case> out;
  MixedCacheConfig c = MixedCacheConfig::make(2, 64);
  c.sink_tokens = 16;
  c.recent_tokens = 32;
  c.block_tokens = 16;
  out.push_back({"bf16, G=d, fp32 scales", c, 8});
  c.key_int2.group_size = 32;
  c.value_int2.group_size = 32;
  c.key_int2.scale_type = c.value_int2.scale_type = ScaleType::kFloat16;
  out.push_back({"bf16, G=32, fp16 scales", c, 4});
  c.full_precision = FullPrecisionType::kFloat32;
  c.sink_tokens = 0;
  c.recent_tokens = 8;
  c.block_tokens = 24;
  c.value_int2.clip_ratio = 0.0;
  out.push_back({"fp32, S0=0, W=8, no V clip", c, 2});
  MixedCacheConfig lm = MixedCacheConfig::make(4, 32);
  lm.key_int2.encoding = lm.value_int2.encoding = Encoding::kLloydMax;
  lm.sink_tokens = 8;
  lm.recent_tokens = 16;
  lm.block_tokens = 8;
  out.push_back({"Lloyd-Max, MHA", lm, 4});
  // No table kernel: G = d/4, and 3 query heads per KV head.
  MixedCacheConfig quarter = MixedCacheConfig::make(2, 128);
  quarter.sink_tokens = 8;
  quarter.recent_tokens = 16;
  quarter.block_tokens = 32;
  quarter.key_int2.group_size = quarter.value_int2.group_size = 32;
  out.push_back({"G=d/4, Hq/Hkv=3", quarter, 6});
  // 8 query heads per KV head, fp16 scales, G = d.
  MixedCacheConfig wide = MixedCacheConfig::make(1, 64);
  wide.sink_tokens = 8;
  wide.recent_tokens = 8;
  wide.block_tokens = 8;
  wide.key_int2.scale_type = wide.value_int2.scale_type = ScaleType::kFloat16;
  out.push_back({"Hq/Hkv=8, fp16 scales", wide, 8});
  return out;
}

// The central property: two passes + log-sum-exp merge = softmax over [full-precision ‖ dequantised rows].
TEST(DecodeAttention, EqualsDenseAttentionOverFullPrecisionAndDequantisedRows) {
  for (const Case& c : cases()) {
    const int d = c.config.head_dim, hkv = c.config.kv_heads;
    const Sequence s = make_sequence(260, c.q_heads, hkv, d, 101);
    MixedKvCache cache(c.config, Rotation::per_kv_head(hkv, d, random_orthogonal(hkv, d, 102)),
                       Rotation::per_kv_head(hkv, d, random_orthogonal(hkv, d, 103)));
    std::vector<float> ref(std::size_t(c.q_heads) * d), fast(ref.size());
    double worst_ref = 0.0, worst_fast = 0.0;
    for (int t = 0; t < s.tokens; ++t) {
      cache.append(s.k_at(t), s.v_at(t));
      if (t % 17 != 3 && t != s.tokens - 1) continue;
      const std::vector<double> dense = dense_over_cache(cache, s.q_at(t), c.q_heads);
      decode_attention_reference(cache, s.q_at(t), c.q_heads, ref.data());
      AttentionOptions options;
      options.threads = 2;
      options.split_tokens = 24;
      decode_attention(cache, s.q_at(t), c.q_heads, fast.data(), options);
      worst_ref = std::max(worst_ref, relative_error(ref, dense));
      worst_fast = std::max(worst_fast, relative_error(fast, dense));
    }
    ASSERT_GT(cache.int2_size(), 100) << c.name;
    EXPECT_LT(worst_ref, 1e-5) << c.name;
    EXPECT_LT(worst_fast, 1e-5) << c.name;
    std::printf("[          ] %s: relative error vs dense: reference %.3g, fast %.3g\n", c.name, worst_ref, worst_fast);
  }
}

// The INT2 history matters: without it the output is different (so the test above can fail).
TEST(DecodeAttention, Int2HistoryChangesTheOutput) {
  const Case c = cases()[0];
  const int d = c.config.head_dim, hkv = c.config.kv_heads;
  const Sequence s = make_sequence(200, c.q_heads, hkv, d, 111);
  MixedKvCache mixed(c.config), full(MixedCacheConfig::full_precision_only(hkv, d));
  mixed.prefill(s.k.data(), s.v.data(), s.tokens);
  full.prefill(s.k.data(), s.v.data(), s.tokens);
  std::vector<float> a(std::size_t(c.q_heads) * d), b(a.size());
  decode_attention_reference(mixed, s.q_at(199), c.q_heads, a.data());
  decode_attention_reference(full, s.q_at(199), c.q_heads, b.data());
  EXPECT_GT(relative_error(a, b), 1e-3);
  // …and a dense computation that leaves the INT2 rows out disagrees with the cache's output.
  EXPECT_LT(relative_error(a, dense_over_cache(mixed, s.q_at(199), c.q_heads)), 1e-5);
  EXPECT_GT(relative_error(a, dense_over_cache(full, s.q_at(199), c.q_heads)), 1e-3);
}

// Fast path vs reference: |fast − ref| ≤ 4e-7·(1 + max|logit|)·max|V| per element (the documented
// tolerance: float32 logits carry an absolute error of a few ulps of their magnitude), and bit-identical
// for every thread count.
TEST(DecodeAttention, FastPathMatchesTheReference) {
  for (const Case& c : cases()) {
    const int d = c.config.head_dim, hkv = c.config.kv_heads;
    const Sequence s = make_sequence(700, c.q_heads, hkv, d, 121);
    MixedKvCache cache(c.config, Rotation::per_layer(d, random_orthogonal(1, d, 122)),
                       Rotation::per_kv_head(hkv, d, random_orthogonal(hkv, d, 123)));
    double max_v = 0.0;
    for (float x : s.v) max_v = std::max(max_v, double(std::fabs(x)));
    std::vector<float> ref(std::size_t(c.q_heads) * d), fast(ref.size()), other(ref.size());
    double worst = 0.0;
    for (int t = 0; t < s.tokens; ++t) {
      cache.append(s.k_at(t), s.v_at(t));
      if (t % 41 != 0 && t != s.tokens - 1) continue;
      decode_attention_reference(cache, s.q_at(t), c.q_heads, ref.data());
      for (int variant = 0; variant < 3; ++variant) {
        AttentionOptions options;
        options.split_tokens = variant == 0 ? 16 : 2048;
        options.use_tables = variant != 2;  // the table kernels and the dequantising loops
        options.threads = 1;
        decode_attention(cache, s.q_at(t), c.q_heads, fast.data(), options);
        options.threads = 3;
        decode_attention(cache, s.q_at(t), c.q_heads, other.data(), options);
        ASSERT_EQ(fast, other) << c.name << ": thread count changed the result";
        const double logit = max_logit(cache, s.q_at(t), c.q_heads);
        for (std::size_t i = 0; i < ref.size(); ++i) {
          const double err = std::fabs(double(fast[i]) - ref[i]);
          worst = std::max(worst, err / (max_v * (1.0 + logit)));
          ASSERT_LE(err, kFastTolerance * (1.0 + logit) * max_v) << c.name << " t " << t << " i " << i;
        }
      }
    }
    std::printf("[          ] %s: max |fast − reference| / (max|V|·(1 + max|logit|)) = %.3g\n", c.name, worst);
  }
}

TEST(DecodeAttention, ExpOfNonPositiveValues) {
  std::vector<float> x;
  for (float v = 0.0f; v > -90.0f; v -= 0.0137f) x.push_back(v);
  x.push_back(-1000.0f);
  x.push_back(-std::numeric_limits<float>::infinity());
  std::vector<float> y = x;
  attention_detail::exp_nonpositive(y.data(), int(y.size()));
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double expected = std::exp(double(x[i]));
    if (x[i] < attention_detail::kExpFlushBelow) {
      EXPECT_EQ(y[i], 0.0f) << x[i];
    } else {
      EXPECT_NEAR(y[i], expected, 3e-7 * expected) << x[i];
    }
  }
  EXPECT_EQ(y[0], 1.0f);
}

TEST(DecodeAttention, ScaleAndArgumentChecks) {
  const Case c = cases()[0];
  const int d = c.config.head_dim, hkv = c.config.kv_heads;
  MixedKvCache cache(c.config);
  std::vector<float> out(std::size_t(c.q_heads) * d);
  const Sequence s = make_sequence(90, c.q_heads, hkv, d, 131);
  EXPECT_THROW(decode_attention_reference(cache, s.q.data(), c.q_heads, out.data()), std::invalid_argument);
  EXPECT_THROW(decode_attention(cache, s.q.data(), c.q_heads, out.data()), std::invalid_argument);
  cache.prefill(s.k.data(), s.v.data(), s.tokens);
  EXPECT_THROW(decode_attention(cache, s.q.data(), 3, out.data()), std::invalid_argument);
  // An explicit scale: 1/√d passed explicitly equals the default; another scale differs.
  std::vector<float> a(out.size()), b(out.size()), r(out.size());
  AttentionOptions options;
  decode_attention(cache, s.q.data(), c.q_heads, a.data(), options);
  options.scale = float(1.0 / std::sqrt(double(d)));
  decode_attention(cache, s.q.data(), c.q_heads, b.data(), options);
  EXPECT_EQ(a, b);
  options.scale = 0.5f;
  decode_attention(cache, s.q.data(), c.q_heads, b.data(), options);
  decode_attention_reference(cache, s.q.data(), c.q_heads, r.data(), 0.5);
  EXPECT_GT(relative_error(a, b), 1e-3);
  EXPECT_LT(relative_error(b, r), 1e-5);
}

// (q·R)·(k·R) = q·k and (softmax·(V·R))·Rᵀ = softmax·V: with nothing in INT2 and float32 storage, the
// rotated cache gives plain dense attention over the unrotated rows.
TEST(DecodeAttention, RotationInvariance) {
  const int d = 64, hkv = 4, hq = 8, kTokens = 150;
  const Sequence s = make_sequence(kTokens, hq, hkv, d, 141);
  MixedCacheConfig c = MixedCacheConfig::full_precision_only(hkv, d);
  c.full_precision = FullPrecisionType::kFloat32;
  const std::vector<Rotation> rotations = {Rotation::per_layer(d, random_orthogonal(1, d, 142)),
                                           Rotation::per_kv_head(hkv, d, random_orthogonal(hkv, d, 143))};
  // (q·R)·(k·R) = q·k directly.
  {
    std::vector<float> qr(static_cast<std::size_t>(d)), kr(static_cast<std::size_t>(d));
    rotations[1].apply(2, s.q_at(0), qr.data());
    rotations[1].apply(2, s.k_at(0), kr.data());
    double plain = 0.0, rotated = 0.0, norms = 0.0;
    for (int e = 0; e < d; ++e) {
      plain += double(s.q_at(0)[e]) * s.k_at(0)[e];
      rotated += double(qr[std::size_t(e)]) * kr[std::size_t(e)];
      norms += std::fabs(double(s.q_at(0)[e]) * s.k_at(0)[e]);
    }
    EXPECT_NEAR(rotated, plain, 1e-5 * norms);
  }
  for (const Rotation& r : rotations) {
    // K and V rotations differ (V uses the other matrix set) to catch a mix-up.
    const Rotation& rv = &r == &rotations[0] ? rotations[1] : rotations[0];
    MixedKvCache cache(c, r, rv);
    cache.prefill(s.k.data(), s.v.data(), kTokens);
    ASSERT_EQ(cache.int2_size(), 0);
    std::vector<float> ref(std::size_t(hq) * d), fast(ref.size());
    decode_attention_reference(cache, s.q_at(kTokens - 1), hq, ref.data());
    decode_attention(cache, s.q_at(kTokens - 1), hq, fast.data());
    // Plain dense attention over the unrotated rows, in double.
    std::vector<double> dense;
    for (int h = 0; h < hq; ++h) {
      const int g = h / (hq / hkv);
      std::vector<std::vector<double>> keys, values;
      for (int t = 0; t < kTokens; ++t) {
        keys.emplace_back(s.k_at(t) + g * d, s.k_at(t) + (g + 1) * d);
        values.emplace_back(s.v_at(t) + g * d, s.v_at(t) + (g + 1) * d);
      }
      const std::vector<double> qh(s.q_at(kTokens - 1) + h * d, s.q_at(kTokens - 1) + (h + 1) * d);
      const auto o = dense_attention(qh, keys, values, 1.0 / std::sqrt(double(d)));
      dense.insert(dense.end(), o.begin(), o.end());
    }
    EXPECT_LT(relative_error(ref, dense), 1e-5);
    EXPECT_LT(relative_error(fast, dense), 1e-5);
    // Rotating only the keys is invariant too.
    MixedKvCache unrotated_values(c, r, Rotation());
    unrotated_values.prefill(s.k.data(), s.v.data(), kTokens);
    decode_attention(unrotated_values, s.q_at(kTokens - 1), hq, fast.data());
    EXPECT_LT(relative_error(fast, dense), 1e-5);
  }
}

#ifndef OSCAR_TESTS_RUNTIME_ONLY
// A real OSCAR rotation set (Qwen3-4B, layer 0, Hq 32, Hkv 8, d 128), read in the test only.
TEST(DecodeAttention, RealRotationFile) {
  const std::string dir = std::string(OSCAR_SHARED_DATA) + "/rotationzoo/qwen3-4b-thinking-2507";
  if (!std::filesystem::exists(dir + "/k_rotation_qqt_r_h_pbr.pt")) GTEST_SKIP() << "no rotation file in " << dir;
  const io::RotationSet ks = io::read_rotation_set(dir + "/k_rotation_qqt_r_h_pbr.pt");
  const io::RotationSet vs = io::read_rotation_set(dir + "/v_rotation_sst_r_h_pbr.pt");
  const io::LayerRotation& kl = ks.layers.at(0);
  const io::LayerRotation& vl = vs.layers.at(0);
  const int d = kl.head_dim, hkv = 8, hq = 32;
  const Rotation rk = kl.num_heads == 1 ? Rotation::per_layer(d, kl.rotation) : Rotation::per_kv_head(kl.num_heads, d, kl.rotation);
  const Rotation rv = vl.num_heads == 1 ? Rotation::per_layer(d, vl.rotation) : Rotation::per_kv_head(vl.num_heads, d, vl.rotation);
  EXPECT_LT(rk.orthogonality_error(), 1e-4);
  MixedCacheConfig c = MixedCacheConfig::make(hkv, d);
  const Sequence s = make_sequence(64 + 256 + 8 * 20 + 5, hq, hkv, d, 151);
  MixedKvCache cache(c, rk, rv);
  cache.prefill(s.k.data(), s.v.data(), s.tokens);
  ASSERT_EQ(cache.int2_size(), 160);
  std::vector<float> ref(std::size_t(hq) * d), fast(ref.size());
  decode_attention_reference(cache, s.q_at(s.tokens - 1), hq, ref.data());
  AttentionOptions options;
  options.threads = 2;
  decode_attention(cache, s.q_at(s.tokens - 1), hq, fast.data(), options);
  const auto dense = dense_over_cache(cache, s.q_at(s.tokens - 1), hq);
  EXPECT_LT(relative_error(ref, dense), 1e-5);
  EXPECT_LT(relative_error(fast, dense), 1e-5);
}
#endif  // OSCAR_TESTS_RUNTIME_ONLY

// Teacher-forced attention: position t gets what decoding t gets (prefill positions: causal, full precision).
TEST(TeacherForced, EqualsStepByStepDecode) {
  struct TfCase {
    const char* name;
    MixedCacheConfig config;
    int q_heads, tokens, prefill;
  };
  std::vector<TfCase> tf;
  MixedCacheConfig c = MixedCacheConfig::make(2, 32);
  c.sink_tokens = 16;
  c.recent_tokens = 24;
  c.block_tokens = 16;
  tf.push_back({"P=0", c, 4, 230, 0});
  tf.push_back({"P=20", c, 4, 230, 20});
  tf.push_back({"P=100 (prefill already demotes)", c, 4, 230, 100});
  tf.push_back({"P=T", c, 4, 120, 120});
  MixedCacheConfig w0 = c;
  w0.recent_tokens = 0;
  w0.sink_tokens = 8;
  w0.key_int2.scale_type = ScaleType::kFloat16;
  tf.push_back({"W=0", w0, 2, 100, 5});
  for (const TfCase& tc : tf) {
    const int d = tc.config.head_dim, hkv = tc.config.kv_heads, hq = tc.q_heads;
    const Sequence s = make_sequence(tc.tokens, hq, hkv, d, 161);
    const Rotation rk = Rotation::per_kv_head(hkv, d, random_orthogonal(hkv, d, 162));
    const Rotation rv = Rotation::per_layer(d, random_orthogonal(1, d, 163));
    std::vector<float> tf_out(std::size_t(tc.tokens) * hq * d);
    TeacherForcedOptions options;
    options.prefill_tokens = tc.prefill;
    options.threads = 3;
    teacher_forced_attention(tc.config, rk, rv, s.q.data(), hq, s.k.data(), s.v.data(), tc.tokens, tf_out.data(), options);

    double max_v = 0.0;
    for (float x : s.v) max_v = std::max(max_v, double(std::fabs(x)));
    // Step by step: prefill positions attend to a cache that holds 0..t and never demotes (same storage,
    // same rotations); the rest append to the mixed cache (prefilled with the first P tokens) and decode.
    MixedCacheConfig full_config = tc.config;
    full_config.sink_tokens = MixedCacheConfig::kUnbounded;
    MixedKvCache prefix(full_config, rk, rv), cache(tc.config, rk, rv);
    cache.prefill(s.k.data(), s.v.data(), tc.prefill);
    std::vector<float> ref(std::size_t(hq) * d), fast(ref.size());
    double worst = 0.0;
    for (int t = 0; t < tc.tokens; ++t) {
      const MixedKvCache* seen = &cache;
      if (t < tc.prefill) {
        prefix.append(s.k_at(t), s.v_at(t));
        seen = &prefix;
      } else {
        cache.append(s.k_at(t), s.v_at(t));
        ASSERT_EQ(cache.int2_size(), demoted_tokens(tc.config, t + 1));
      }
      decode_attention_reference(*seen, s.q_at(t), hq, ref.data());
      decode_attention(*seen, s.q_at(t), hq, fast.data());
      const double bound = kFastTolerance * (1.0 + max_logit(*seen, s.q_at(t), hq)) * max_v;
      for (std::size_t i = 0; i < ref.size(); ++i) {
        const float got = tf_out[std::size_t(t) * hq * d + i];
        worst = std::max(worst, std::fabs(double(got) - ref[i]) / bound * kFastTolerance);
        ASSERT_LE(std::fabs(double(got) - ref[i]), bound) << tc.name << " t " << t << " i " << i;
        ASSERT_LE(std::fabs(double(got) - fast[i]), 2 * bound) << tc.name << " t " << t << " i " << i;
      }
    }
    ASSERT_GT(cache.int2_size(), 0) << tc.name;
    std::printf("[          ] %s: max |teacher-forced − reference| / (max|V|·(1 + max|logit|)) = %.3g\n", tc.name, worst);
  }
}

// Teacher forcing is causal and uses INT2 where decoding would: perturbing a future token changes nothing
// before it, and the same sequence without INT2 (full-precision-only) gives different late outputs.
TEST(TeacherForced, CausalAndUsesInt2) {
  MixedCacheConfig c = MixedCacheConfig::make(2, 32);
  c.sink_tokens = 8;
  c.recent_tokens = 16;
  c.block_tokens = 8;
  const int hq = 4, d = 32, kTokens = 120;
  Sequence s = make_sequence(kTokens, hq, 2, d, 171);
  std::vector<float> a(std::size_t(kTokens) * hq * d), b(a.size()), full(a.size());
  teacher_forced_attention(c, Rotation(), Rotation(), s.q.data(), hq, s.k.data(), s.v.data(), kTokens, a.data());
  teacher_forced_attention(MixedCacheConfig::full_precision_only(2, d), Rotation(), Rotation(), s.q.data(), hq,
                           s.k.data(), s.v.data(), kTokens, full.data());
  for (int i = 0; i < 2 * d; ++i) s.k[std::size_t(90) * 2 * d + i] += 3.0f;
  teacher_forced_attention(c, Rotation(), Rotation(), s.q.data(), hq, s.k.data(), s.v.data(), kTokens, b.data());
  const std::size_t before = std::size_t(90) * hq * d;
  EXPECT_TRUE(std::equal(a.begin(), a.begin() + before, b.begin()));
  EXPECT_FALSE(std::equal(a.begin() + before, a.end(), b.begin() + before));
  // Up to S0 + W + 7 tokens nothing is demoted: identical to full precision; later positions differ.
  const std::size_t undemoted = std::size_t(8 + 16 + 7) * hq * d;
  EXPECT_TRUE(std::equal(a.begin(), a.begin() + undemoted, full.begin()));
  EXPECT_FALSE(std::equal(a.begin() + undemoted, a.end(), full.begin() + undemoted));
  EXPECT_THROW(teacher_forced_attention(c, Rotation(), Rotation(), s.q.data(), hq, s.k.data(), s.v.data(), kTokens,
                                        a.data(), TeacherForcedOptions{kTokens + 1, 0.0f, 1}),
               std::invalid_argument);
}

}  // namespace
}  // namespace oscar::runtime
