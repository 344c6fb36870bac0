// The mixed KV cache (lib/runtime/mixed_cache.h): demotion rule, sink, recent-window occupancy, paging,
// prefill == appends, storage as rotated bf16 rows and INT2 rows quantised from them; and Rotation.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <stdexcept>
#include <vector>

#include "core/dtype.h"
#include "runtime/int2_quantize.h"
#include "runtime/mixed_cache.h"
#include "runtime/rotation.h"
#include "runtime_test_support.h"

namespace oscar::runtime {
namespace {

using test::random_orthogonal;
using test::random_values;

MixedCacheConfig small_config() {
  MixedCacheConfig c = MixedCacheConfig::make(2, 32);
  c.sink_tokens = 16;
  c.recent_tokens = 24;
  c.block_tokens = 16;
  return c;
}

std::size_t int2_row_bytes(const Int2Config& c) {
  return std::size_t(c.packed_bytes()) + 2 * std::size_t(c.groups()) * (c.scale_type == ScaleType::kFloat32 ? 4 : 2);
}

/// Everything a cache holds, as bytes/floats, for exact comparison.
struct Snapshot {
  int sink = 0, recent = 0, int2 = 0;
  std::vector<float> full;              // full-precision rows (kind, head, row)
  std::vector<std::uint8_t> int2_rows;  // codes, scales, zeros of every INT2 row (kind, head, row)
  bool operator==(const Snapshot& o) const {
    return sink == o.sink && recent == o.recent && int2 == o.int2 && full == o.full && int2_rows == o.int2_rows;
  }
};

Snapshot snapshot(const MixedKvCache& cache) {
  Snapshot s;
  s.sink = cache.sink_size();
  s.recent = cache.recent_size();
  s.int2 = cache.int2_size();
  const int d = cache.config().head_dim;
  std::vector<float> row(static_cast<std::size_t>(d));
  for (KvKind kind : {KvKind::kKey, KvKind::kValue}) {
    const Int2Config& c = cache.int2_config(kind);
    const std::size_t sb = c.scale_type == ScaleType::kFloat32 ? 4 : 2;
    for (int h = 0; h < cache.config().kv_heads; ++h) {
      for (int i = 0; i < cache.full_precision_size(); ++i) {
        cache.full_precision_row(kind, h, i, row.data());
        s.full.insert(s.full.end(), row.begin(), row.end());
      }
      for (int i = 0; i < cache.int2_size(); ++i) {
        const ConstInt2Rows r = cache.int2_row(kind, h, i);
        const auto* scales = static_cast<const std::uint8_t*>(r.scales);
        const auto* zeros = static_cast<const std::uint8_t*>(r.zeros);
        s.int2_rows.insert(s.int2_rows.end(), r.codes, r.codes + c.packed_bytes());
        s.int2_rows.insert(s.int2_rows.end(), scales, scales + c.groups() * sb);
        s.int2_rows.insert(s.int2_rows.end(), zeros, zeros + c.groups() * sb);
      }
    }
  }
  return s;
}

TEST(MixedCache, ConfigValidation) {
  MixedCacheConfig c = small_config();
  EXPECT_NO_THROW(MixedKvCache{c});
  c.sink_tokens = 12;
  EXPECT_THROW(MixedKvCache{c}, std::invalid_argument);
  c = small_config();
  c.recent_tokens = 20;
  EXPECT_THROW(MixedKvCache{c}, std::invalid_argument);
  c = small_config();
  c.block_tokens = 12;
  EXPECT_THROW(MixedKvCache{c}, std::invalid_argument);
  c = small_config();
  c.value_int2.head_dim = 64;
  EXPECT_THROW(MixedKvCache{c}, std::invalid_argument);
  c = small_config();
  EXPECT_THROW(MixedKvCache(c, Rotation::per_kv_head(3, 32, random_orthogonal(3, 32, 1))), std::invalid_argument);
  EXPECT_THROW(MixedKvCache(c, Rotation::per_layer(16, random_orthogonal(1, 16, 1))), std::invalid_argument);
  EXPECT_THROW(Rotation::per_layer(32, std::vector<float>(10)), std::invalid_argument);
}

// The demotion rule, simulated independently token by token.
TEST(MixedCache, SegmentsFollowTheDemotionRuleAndTheWindowCyclesWToWPlus7) {
  for (int w : {24, 0, 8}) {
    MixedCacheConfig c = small_config();
    c.recent_tokens = w;
    MixedKvCache cache(c, Rotation::per_layer(32, random_orthogonal(1, 32, 5)));
    const int kTokens = 400;
    const auto k = random_values(std::size_t(kTokens) * 2 * 32, 11), v = random_values(std::size_t(kTokens) * 2 * 32, 12);
    int sink = 0, recent = 0, int2 = 0;
    std::set<int> window_sizes;
    std::vector<float> sink_before, row(32);
    for (int t = 0; t < kTokens; ++t) {
      cache.append(k.data() + std::size_t(t) * 64, v.data() + std::size_t(t) * 64);
      if (sink < c.sink_tokens) {
        ++sink;
      } else {
        ++recent;
        if (recent == w + 8) {
          recent -= 8;
          int2 += 8;
        }
      }
      ASSERT_EQ(cache.sink_size(), sink) << "w " << w << " t " << t;
      ASSERT_EQ(cache.recent_size(), recent) << "w " << w << " t " << t;
      ASSERT_EQ(cache.int2_size(), int2) << "w " << w << " t " << t;
      ASSERT_EQ(cache.size(), t + 1);
      ASSERT_EQ(cache.int2_pages(), (int2 + 15) / 16);
      if (t + 1 - c.sink_tokens >= w) {
        ASSERT_GE(cache.recent_size(), w);
        ASSERT_LE(cache.recent_size(), w + 7);
        window_sizes.insert(cache.recent_size());
      }
      if (t + 1 == c.sink_tokens) {
        for (int i = 0; i < c.sink_tokens; ++i) {
          cache.full_precision_row(KvKind::kKey, 1, i, row.data());
          sink_before.insert(sink_before.end(), row.begin(), row.end());
        }
      }
    }
    EXPECT_EQ(window_sizes.size(), 8u) << "the window takes every size W..W+7";
    EXPECT_EQ(*window_sizes.begin(), w);
    EXPECT_EQ(*window_sizes.rbegin(), w + 7);
    // The sink never changes once filled.
    std::vector<float> sink_after;
    for (int i = 0; i < c.sink_tokens; ++i) {
      cache.full_precision_row(KvKind::kKey, 1, i, row.data());
      sink_after.insert(sink_after.end(), row.begin(), row.end());
    }
    EXPECT_EQ(sink_before, sink_after);
    const auto sink_span = cache.sink_rows(KvKind::kValue, 0);
    EXPECT_EQ(sink_span.count, c.sink_tokens);
    EXPECT_EQ(sink_span.first_position, 0);
    const auto recent_span = cache.recent_rows(KvKind::kValue, 0);
    EXPECT_EQ(recent_span.count, cache.recent_size());
    EXPECT_EQ(recent_span.first_position, c.sink_tokens + cache.int2_size());
  }
}

// Full-precision rows are bf16(x·R) of the right token, INT2 rows are the reference quantisation of the
// stored bf16 row (widened), whenever it was demoted.
TEST(MixedCache, StoresRotatedBf16RowsAndQuantisesTheStoredValue) {
  MixedCacheConfig c = MixedCacheConfig::make(2, 64);
  c.sink_tokens = 16;
  c.recent_tokens = 24;
  c.block_tokens = 16;
  c.key_int2.group_size = 32;
  c.value_int2.scale_type = ScaleType::kFloat16;
  const int d = 64, hkv = 2, kTokens = 137;
  const auto rk = random_orthogonal(hkv, d, 21), rv = random_orthogonal(hkv, d, 22);
  MixedKvCache cache(c, Rotation::per_kv_head(hkv, d, rk), Rotation::per_kv_head(hkv, d, rv));
  const auto k = random_values(std::size_t(kTokens) * hkv * d, 23, 3.0f), v = random_values(std::size_t(kTokens) * hkv * d, 24);
  for (int t = 0; t < kTokens; ++t) cache.append(k.data() + std::size_t(t) * hkv * d, v.data() + std::size_t(t) * hkv * d);
  ASSERT_GT(cache.int2_size(), 0);

  // The stored (bf16) row of token t, head h, computed here: x·R in double, rounded to bf16; the runtime
  // rotates in float, so allow one bf16 ulp where x·R lies near a rounding boundary.
  const auto expected_stored = [&](KvKind kind, int t, int h, std::vector<float>& exact) {
    const auto& x = kind == KvKind::kKey ? k : v;
    const auto& r = kind == KvKind::kKey ? rk : rv;
    exact.assign(std::size_t(d), 0.0f);
    for (int j = 0; j < d; ++j) {
      double sum = 0.0;
      for (int i = 0; i < d; ++i) sum += double(x[(std::size_t(t) * hkv + h) * d + i]) * r[(std::size_t(h) * d + i) * d + j];
      exact[std::size_t(j)] = float(sum);
    }
  };
  std::vector<float> row(static_cast<std::size_t>(d)), exact, widened(static_cast<std::size_t>(d));
  for (KvKind kind : {KvKind::kKey, KvKind::kValue}) {
    for (int h = 0; h < hkv; ++h) {
      for (int i = 0; i < cache.full_precision_size(); ++i) {
        const int t = i < cache.sink_size() ? i : cache.recent_begin_position() + (i - cache.sink_size());
        cache.full_precision_row(kind, h, i, row.data());
        expected_stored(kind, t, h, exact);
        for (int e = 0; e < d; ++e) {
          EXPECT_EQ(float_to_bfloat16(row[e]) , float_to_bits(row[e]) >> 16) << "not a bf16 value";
          EXPECT_LE(std::fabs(row[e] - exact[std::size_t(e)]), std::ldexp(std::fabs(exact[std::size_t(e)]), -8) + 1e-6f)
              << "token " << t << " head " << h << " element " << e;
        }
      }
      // INT2 rows: the reference quantisation of the bf16 value of the same token. Its bf16 value is taken
      // from a cache that never demotes, built from the same rows.
      MixedCacheConfig full_config = c;
      full_config.sink_tokens = MixedCacheConfig::kUnbounded;
      MixedKvCache full(full_config, cache.key_rotation(), cache.value_rotation());
      full.prefill(k.data(), v.data(), kTokens);
      ASSERT_EQ(full.int2_size(), 0);
      ASSERT_EQ(full.sink_size(), kTokens);
      const Int2Config& ic = cache.int2_config(kind);
      const std::size_t sb = ic.scale_type == ScaleType::kFloat32 ? 4 : 2;
      for (int i = 0; i < cache.int2_size(); ++i) {
        const int t = cache.int2_begin() + i;
        full.full_precision_row(kind, h, t, widened.data());
        std::vector<std::uint8_t> codes(ic.packed_bytes()), scales(ic.groups() * sb), zeros(ic.groups() * sb);
        quantize_rows_reference(widened.data(), 1, ic, Int2Rows{codes.data(), scales.data(), zeros.data()});
        const ConstInt2Rows got = cache.int2_row(kind, h, i);
        ASSERT_EQ(0, std::memcmp(got.codes, codes.data(), codes.size())) << "token " << t;
        ASSERT_EQ(0, std::memcmp(got.scales, scales.data(), scales.size())) << "token " << t;
        ASSERT_EQ(0, std::memcmp(got.zeros, zeros.data(), zeros.size())) << "token " << t;
      }
    }
  }
}

TEST(MixedCache, PrefillEqualsAppendsOneByOne) {
  MixedCacheConfig c = small_config();
  c.threads = 3;
  const int d = 32, hkv = 2, kMax = 300;
  const Rotation rk = Rotation::per_kv_head(hkv, d, random_orthogonal(hkv, d, 31));
  const Rotation rv = Rotation::per_layer(d, random_orthogonal(1, d, 32));
  const auto k = random_values(std::size_t(kMax) * hkv * d, 33), v = random_values(std::size_t(kMax) * hkv * d, 34);
  const std::size_t stride = std::size_t(hkv) * d;
  // One-by-one states after every count, compared with prefill(count) and with chunked prefills.
  MixedKvCache stepwise(c, rk, rv);
  for (int count = 1; count <= kMax; ++count) {
    stepwise.append(k.data() + (count - 1) * stride, v.data() + (count - 1) * stride);
    if (count % 7 != 0 && count > 90 && count != kMax) continue;
    const Snapshot expected = snapshot(stepwise);
    MixedKvCache whole(c, rk, rv);
    whole.prefill(k.data(), v.data(), count);
    ASSERT_TRUE(snapshot(whole) == expected) << "prefill(" << count << ")";
    // Two chunks, then single appends: any split gives the same state.
    for (int first : {count / 3, count / 2 + 5, count - 1}) {
      if (first < 0 || first > count) continue;
      MixedKvCache chunked(c, rk, rv);
      chunked.prefill(k.data(), v.data(), first);
      const int second = (count - first) / 2;
      chunked.prefill(k.data() + first * stride, v.data() + first * stride, second);
      for (int t = first + second; t < count; ++t) chunked.append(k.data() + t * stride, v.data() + t * stride);
      ASSERT_TRUE(snapshot(chunked) == expected) << "prefill(" << first << ") + prefill(" << second << ") + appends, total "
                                                 << count;
    }
  }
}

TEST(MixedCache, PagesAndMemoryAccounting) {
  MixedCacheConfig c = MixedCacheConfig::make(8, 128);
  const int kTokens = 64 + 256 + 8 * 40 + 3;  // 320 in the window
  MixedKvCache cache(c);
  const auto k = random_values(std::size_t(kTokens) * 8 * 128, 41), v = random_values(std::size_t(kTokens) * 8 * 128, 42);
  cache.prefill(k.data(), v.data(), kTokens);
  EXPECT_EQ(cache.sink_size(), 64);
  EXPECT_EQ(cache.int2_size(), 320);
  EXPECT_EQ(cache.recent_size(), 259);
  EXPECT_EQ(cache.int2_pages(), 5);
  for (int p = 0; p < 5; ++p) EXPECT_EQ(cache.int2_page_rows(p), 64);
  const CacheMemory m = cache.memory();
  // bf16: 256 bytes per row; INT2 with float32 scale/zero at G = d = 128: 32 + 4 + 4 = 40 bytes per row.
  EXPECT_EQ(m.full_precision_bytes, std::int64_t(64 + 259) * 8 * 256 * 2);
  EXPECT_EQ(m.int2_bytes, std::int64_t(320) * 8 * 40 * 2);
  EXPECT_GE(m.allocated_bytes, m.used_bytes());
  EXPECT_EQ(int2_row_bytes(c.key_int2), 40u);

  // float16 scales and groups of 32: 32 + 4·2·2 = 48 bytes; float32 full precision: 512 bytes per row.
  c.key_int2.group_size = c.value_int2.group_size = 32;
  c.key_int2.scale_type = c.value_int2.scale_type = ScaleType::kFloat16;
  c.full_precision = FullPrecisionType::kFloat32;
  c.block_tokens = 24;
  MixedKvCache other(c);
  other.prefill(k.data(), v.data(), kTokens);
  EXPECT_EQ(other.int2_pages(), 14);  // ⌈320 / 24⌉
  EXPECT_EQ(other.int2_page_rows(13), 320 - 13 * 24);
  EXPECT_EQ(other.memory().int2_bytes, std::int64_t(320) * 8 * 48 * 2);
  EXPECT_EQ(other.memory().full_precision_bytes, std::int64_t(64 + 259) * 8 * 512 * 2);
  // Both hold the same INT2 history positions, and reserve/clear do not change results.
  other.clear();
  EXPECT_EQ(other.size(), 0);
  other.reserve(5000);
  other.prefill(k.data(), v.data(), kTokens);
  EXPECT_EQ(other.int2_size(), 320);
}

TEST(MixedCache, FullPrecisionOnlyNeverDemotes) {
  const MixedCacheConfig c = MixedCacheConfig::full_precision_only(2, 32);
  MixedKvCache cache(c);
  const int kTokens = 3000;
  const auto k = random_values(std::size_t(kTokens) * 64, 51), v = random_values(std::size_t(kTokens) * 64, 52);
  for (int t = 0; t < kTokens; ++t) cache.append(k.data() + std::size_t(t) * 64, v.data() + std::size_t(t) * 64);
  EXPECT_EQ(cache.sink_size(), kTokens);
  EXPECT_EQ(cache.int2_size(), 0);
  EXPECT_EQ(cache.recent_size(), 0);
  std::vector<float> row(32);
  cache.full_precision_row(KvKind::kValue, 1, 2999, row.data());
  for (int e = 0; e < 32; ++e) EXPECT_EQ(row[e], bfloat16_to_float(float_to_bfloat16(v[std::size_t(2999) * 64 + 32 + e])));
}

TEST(Rotation, AppliesRowVectorsTimesTheMatrix) {
  const int d = 24;
  const auto m = random_orthogonal(3, d, 61);
  const Rotation r = Rotation::per_kv_head(3, d, m);
  EXPECT_LT(r.orthogonality_error(), 1e-6);
  EXPECT_EQ(Rotation().orthogonality_error(), 0.0);
  const auto x = random_values(std::size_t(d), 62);
  std::vector<float> y(static_cast<std::size_t>(d)), back(static_cast<std::size_t>(d));
  r.apply(2, x.data(), y.data());
  for (int j = 0; j < d; ++j) {
    double sum = 0.0;
    for (int i = 0; i < d; ++i) sum += double(x[std::size_t(i)]) * m[(std::size_t(2) * d + i) * d + j];
    EXPECT_NEAR(y[std::size_t(j)], sum, 1e-5);
  }
  r.apply_transpose(2, y.data(), back.data());
  for (int j = 0; j < d; ++j) EXPECT_NEAR(back[std::size_t(j)], x[std::size_t(j)], 1e-5);
  // A per-layer rotation is the same matrix for every head.
  const Rotation layer = Rotation::per_layer(d, std::vector<float>(m.begin(), m.begin() + d * d));
  EXPECT_EQ(layer.matrix(0), layer.matrix(5));
  EXPECT_TRUE(Rotation::identity().is_identity());
}

}  // namespace
}  // namespace oscar::runtime
