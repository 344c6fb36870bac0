#include "runtime/teacher_forced.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/parallel_for.h"
#include "runtime/decode_attention.h"
#include "runtime/int2_quantize.h"

namespace oscar::runtime {

int demoted_tokens(const MixedCacheConfig& config, int tokens) {
  const std::int64_t after_sink = std::int64_t(tokens) - config.sink_tokens;
  const std::int64_t w = config.recent_tokens;
  if (after_sink < w + kDemotionStep) return 0;
  return int((after_sink - w) / kDemotionStep * kDemotionStep);
}

void teacher_forced_attention(const MixedCacheConfig& config, const Rotation& key_rotation,
                              const Rotation& value_rotation, const float* q, int q_heads, const float* k,
                              const float* v, int tokens, float* out, const TeacherForcedOptions& options) {
  config.validate();
  key_rotation.check_compatible(config.kv_heads, config.head_dim, "key rotation");
  value_rotation.check_compatible(config.kv_heads, config.head_dim, "value rotation");
  const int d = config.head_dim, hkv = config.kv_heads, sink = config.sink_tokens;
  if (tokens < 0) throw std::invalid_argument("teacher-forced attention: negative token count");
  if (q_heads <= 0 || q_heads % hkv != 0) {
    throw std::invalid_argument("teacher-forced attention: " + std::to_string(q_heads) + " query heads for " +
                                std::to_string(hkv) + " KV heads");
  }
  const int prefill = options.prefill_tokens;
  if (prefill < 0 || prefill > tokens) {
    throw std::invalid_argument("teacher-forced attention: prefill length " + std::to_string(prefill) +
                                " outside [0, " + std::to_string(tokens) + "]");
  }
  if (tokens == 0) return;
  const int group = q_heads / hkv;
  const int threads = std::max(options.threads, 1);
  const float scale = options.scale > 0.0f ? options.scale : float(1.0 / std::sqrt(double(d)));
  const std::size_t T = std::size_t(tokens), D = std::size_t(d);

  // 1. Every token's rows as the cache stores them (rotated, rounded to the storage type), widened back to
  //    float: full[kind][head][t][d]. Queries rotated by R_K of their KV head and scaled: qs[t][h][d].
  std::vector<float> full[2] = {std::vector<float>(std::size_t(hkv) * T * D), std::vector<float>(std::size_t(hkv) * T * D)};
  std::vector<float> qs(T * std::size_t(q_heads) * D);
  const std::size_t storage_bytes = D * full_precision_bytes(config.full_precision);
  parallel_for(tokens, threads, [&](int t) {
    std::vector<float> rotated(D);
    std::vector<std::uint8_t> stored(storage_bytes);
    for (int kind = 0; kind < 2; ++kind) {
      const Rotation& r = kind == 0 ? key_rotation : value_rotation;
      const float* src = kind == 0 ? k : v;
      for (int h = 0; h < hkv; ++h) {
        const float* x = src + (std::size_t(t) * hkv + h) * D;
        if (!r.is_identity()) {
          r.apply(h, x, rotated.data());
          x = rotated.data();
        }
        store_full_precision(x, D, config.full_precision, stored.data());
        widen_full_precision(stored.data(), D, config.full_precision, full[kind].data() + (std::size_t(h) * T + t) * D);
      }
    }
    for (int h = 0; h < q_heads; ++h) {
      float* dst = qs.data() + (std::size_t(t) * q_heads + h) * D;
      const float* x = q + (std::size_t(t) * q_heads + h) * D;
      if (key_rotation.is_identity()) {
        std::memcpy(dst, x, D * sizeof(float));
      } else {
        key_rotation.apply(h / group, x, dst);
      }
      for (std::size_t e = 0; e < D; ++e) dst[e] *= scale;
    }
  });

  // 2. Every token ever demoted (positions S0 .. S0+m−1 at the end), quantised once from its stored row and
  //    dequantised: int2[kind][head][i][d] for position S0 + i.
  const int demoted = demoted_tokens(config, tokens);
  std::vector<float> int2[2] = {std::vector<float>(std::size_t(hkv) * demoted * D),
                                std::vector<float>(std::size_t(hkv) * demoted * D)};
  if (demoted > 0) {
    constexpr int kRowsPerJob = 256;
    const int chunks = (demoted + kRowsPerJob - 1) / kRowsPerJob;
    parallel_for(2 * hkv * chunks, threads, [&](int job) {
      const int kind = job / (hkv * chunks), h = job / chunks % hkv, first = job % chunks * kRowsPerJob;
      const int rows = std::min(kRowsPerJob, demoted - first);
      const Int2Config& c = kind == 0 ? config.key_int2 : config.value_int2;
      const std::size_t scale_bytes = c.scale_type == ScaleType::kFloat32 ? 4 : 2;
      const std::size_t per_row = std::size_t(c.groups()) * scale_bytes;
      std::vector<std::uint8_t> codes(std::size_t(rows) * c.packed_bytes()), scales(rows * per_row), zeros(rows * per_row);
      const float* src = full[kind].data() + (std::size_t(h) * T + sink + first) * D;
      quantize_rows(src, rows, c, Int2Rows{codes.data(), scales.data(), zeros.data()}, 1);
      float* dst = int2[kind].data() + (std::size_t(h) * demoted + first) * D;
      for (int r = 0; r < rows; ++r) {
        attention_detail::dequantize_row(
            ConstInt2Rows{codes.data() + std::size_t(r) * c.packed_bytes(), scales.data() + r * per_row, zeros.data() + r * per_row},
            c, dst + std::size_t(r) * D);
      }
    });
  }

  // 3. Every (position, KV head): softmax over positions 0..t, each key/value in the version position t sees.
  parallel_for(tokens * hkv, threads, [&](int job) {
    const int t = job / hkv, g = job % hkv;
    const int n = t + 1;
    const int int2_end = sink + (t < prefill ? 0 : demoted_tokens(config, t + 1));  // INT2: [sink, int2_end)
    const auto row = [&](int kind, int j) {
      if (j >= sink && j < int2_end) return int2[kind].data() + (std::size_t(g) * demoted + (j - sink)) * D;
      return full[kind].data() + (std::size_t(g) * T + j) * D;
    };
    std::vector<float> scores(std::size_t(group) * n), acc(D), o(D);
    const float* qg = qs.data() + (std::size_t(t) * q_heads + std::size_t(g) * group) * D;
    for (int j = 0; j < n; ++j) {
      const float* key = row(0, j);
      for (int a = 0; a < group; ++a) scores[std::size_t(a) * n + j] = attention_detail::dot(qg + a * D, key, d);
    }
    for (int a = 0; a < group; ++a) {
      float* s = scores.data() + std::size_t(a) * n;
      float m = -std::numeric_limits<float>::infinity(), l = 0.0f;
      for (int j = 0; j < n; ++j) m = std::max(m, s[j]);
      for (int j = 0; j < n; ++j) s[j] -= m;
      attention_detail::exp_nonpositive(s, n);
      for (int j = 0; j < n; ++j) l += s[j];
      std::fill(acc.begin(), acc.end(), 0.0f);
      // acc += Σ_j p_j·v_j, four rows per pass over the accumulator.
      int j = 0;
      for (; j + 4 <= n; j += 4) {
        const float *v0 = row(1, j), *v1 = row(1, j + 1), *v2 = row(1, j + 2), *v3 = row(1, j + 3);
        const float p0 = s[j], p1 = s[j + 1], p2 = s[j + 2], p3 = s[j + 3];
        for (int e = 0; e < d; ++e) acc[std::size_t(e)] += (p0 * v0[e] + p1 * v1[e]) + (p2 * v2[e] + p3 * v3[e]);
      }
      for (; j < n; ++j) attention_detail::axpy(s[j], row(1, j), acc.data(), d);
      const float inverse = 1.0f / l;
      for (std::size_t e = 0; e < D; ++e) o[e] = acc[e] * inverse;
      float* dst = out + (std::size_t(t) * q_heads + std::size_t(g) * group + a) * D;
      if (value_rotation.is_identity()) {
        std::memcpy(dst, o.data(), D * sizeof(float));
      } else {
        value_rotation.apply_transpose(g, o.data(), dst);
      }
    }
  });
}

}  // namespace oscar::runtime
