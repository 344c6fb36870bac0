// The INT2 format (lib/runtime/int2_format.h, int2_quantize.h) against the spec's formulas, written out
// again here independently of the library, on random and adversarial rows; and the fast path against the
// reference, bit for bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "runtime/int2_format.h"
#include "runtime/int2_quantize.h"

namespace oscar::runtime {
namespace {

constexpr float kMaxFloat = std::numeric_limits<float>::max();

std::uint32_t bits_of(float f) {
  std::uint32_t b;
  std::memcpy(&b, &f, sizeof b);
  return b;
}

/// Owns the buffers of `count` quantised rows.
struct Quantised {
  Quantised(std::int64_t count, const Int2Config& config)
      : config(config),
        codes(std::size_t(count) * config.packed_bytes()),
        scales(std::size_t(count) * config.groups() * config.scale_bytes()),
        zeros(scales.size()) {}
  Int2Rows rows() { return {codes.data(), scales.data(), zeros.data()}; }
  ConstInt2Rows const_rows() const { return {codes.data(), scales.data(), zeros.data()}; }
  float scale(std::int64_t row, int group) const { return load_scale(scales.data(), row * config.groups() + group, config.scale_type); }
  float zero(std::int64_t row, int group) const { return load_scale(zeros.data(), row * config.groups() + group, config.scale_type); }
  std::uint8_t code(std::int64_t row, int element) const {  // unpacked here by hand, not with unpack_codes
    const int quarter = config.head_dim / 4;
    return std::uint8_t((codes[std::size_t(row) * quarter + element % quarter] >> (2 * (element / quarter))) & 3);
  }
  Int2Config config;
  std::vector<std::uint8_t> codes, scales, zeros;
};

Quantised quantize_reference(const std::vector<float>& rows, const Int2Config& config) {
  const std::int64_t count = std::int64_t(rows.size()) / config.head_dim;
  Quantised q(count, config);
  quantize_rows_reference(rows.data(), count, config, q.rows());
  return q;
}

Quantised quantize_fast(const std::vector<float>& rows, const Int2Config& config, int threads) {
  const std::int64_t count = std::int64_t(rows.size()) / config.head_dim;
  Quantised q(count, config);
  quantize_rows(rows.data(), count, config, q.rows(), threads);
  return q;
}

std::vector<float> dequantize_reference(const Quantised& q) {
  const std::int64_t count = std::int64_t(q.codes.size()) / q.config.packed_bytes();
  std::vector<float> out(std::size_t(count) * q.config.head_dim);
  dequantize_rows_reference(q.const_rows(), count, q.config, out.data());
  return out;
}

// ---- The spec, written out independently: one row in float32, as the kernels compute it.

struct SpecRow {
  std::vector<float> clipped;
  std::vector<int> codes;
  std::vector<float> scale, zero;  // float32, before storage
  std::vector<float> mean, sigma;  // Lloyd-Max only
};

/// 32 strided partial sums, then halved pairwise (the order int2_format.h fixes).
float spec_sum(const std::vector<float>& v) {
  std::vector<float> partial(32, 0.0f);
  for (std::size_t i = 0; i < v.size(); ++i) partial[i % 32] = partial[i % 32] + v[i];
  for (int width = 16; width >= 1; width /= 2) {
    for (int j = 0; j < width; ++j) partial[j] = partial[j] + partial[j + width];
  }
  return partial[0];
}

SpecRow spec_row(const float* input, const Int2Config& c) {
  const int d = c.head_dim, G = c.group_size;
  SpecRow s;
  s.clipped.assign(input, input + d);
  const int idx = c.clip_ratio > 0 ? std::min(int(c.clip_ratio * d), d - 1) : -1;
  if (idx >= 0) {
    std::vector<float> sorted(d);
    for (int e = 0; e < d; ++e) sorted[e] = std::fabs(input[e]);
    std::sort(sorted.begin(), sorted.end());
    const float tau = sorted[idx];
    for (float& v : s.clipped) v = std::clamp(v, -tau, tau);
  }
  s.codes.resize(d);
  for (int g = 0; g < d / G; ++g) {
    const std::vector<float> x(s.clipped.begin() + g * G, s.clipped.begin() + (g + 1) * G);
    float scale, zero;
    if (c.encoding == Encoding::kMinMax) {
      float mn = *std::min_element(x.begin(), x.end());
      const float mx = *std::max_element(x.begin(), x.end());
      if (mn == 0.0f) mn = 0.0f;  // +0.0 whichever zero the min was
      const float range = mx - mn;
      scale = std::max(range, 1e-8f) / 3.0f;
      zero = -mn / scale;
      if (std::isinf(range) || std::isinf(zero)) {  // the documented overflow fallback
        scale = std::max(mx / 3.0f - mn / 3.0f, std::max(std::fabs(mn), std::fabs(mx)) / 3.0f);
        zero = -mn / scale;
      }
      for (int e = 0; e < G; ++e) {
        const float v = x[e] / scale + zero + 0.5f;
        EXPECT_TRUE(std::isfinite(v) && std::fabs(v) < 1e9f) << v;
        s.codes[g * G + e] = std::clamp(static_cast<int>(v), 0, 3);  // truncation toward zero, clamp
      }
    } else {
      const float n = float(G);
      const float mean = spec_sum(x) / n;
      std::vector<float> squares(G);
      for (int e = 0; e < G; ++e) squares[e] = (x[e] - mean) * (x[e] - mean);
      const float sigma = std::max(std::sqrt(spec_sum(squares) / n), 1e-8f);
      for (int e = 0; e < G; ++e) {
        const float z = (x[e] - mean) / sigma;
        s.codes[g * G + e] = (z >= -0.98107f) + (z >= 0.0f) + (z >= 0.98107f);
      }
      scale = 1.16739f * sigma;
      zero = 1.5f - mean / scale;
      s.mean.push_back(mean);
      s.sigma.push_back(sigma);
    }
    s.scale.push_back(scale);
    s.zero.push_back(zero);
  }
  return s;
}

/// float16 bits: rounded to nearest even, saturating at ±65504.
std::uint16_t spec_float16(float v) {
  std::uint16_t h = float_to_float16(v);
  if ((h & 0x7fff) == 0x7c00) h = std::uint16_t((h & 0x8000) | 0x7bff);
  return h;
}

/// The stored value: float32 as is, float16 rounded, widened back.
float spec_stored(float v, ScaleType t) { return t == ScaleType::kFloat32 ? v : float16_to_float(spec_float16(v)); }

/// Checks codes, scales, zeros and the dequantised values of every row against spec_row.
void expect_matches_spec(const std::vector<float>& rows, const Int2Config& c, const std::string& label) {
  const Quantised q = quantize_reference(rows, c);
  const std::vector<float> dq = dequantize_reference(q);
  const std::int64_t count = std::int64_t(rows.size()) / c.head_dim;
  for (std::int64_t r = 0; r < count; ++r) {
    const SpecRow s = spec_row(rows.data() + r * c.head_dim, c);
    for (int g = 0; g < c.groups(); ++g) {
      ASSERT_EQ(bits_of(q.scale(r, g)), bits_of(spec_stored(s.scale[g], c.scale_type))) << label << " row " << r << " group " << g;
      ASSERT_EQ(bits_of(q.zero(r, g)), bits_of(spec_stored(s.zero[g], c.scale_type))) << label << " row " << r << " group " << g;
    }
    for (int e = 0; e < c.head_dim; ++e) {
      ASSERT_EQ(int(q.code(r, e)), s.codes[e]) << label << " row " << r << " element " << e;
      const int g = e / c.group_size;
      const float expected = (float(s.codes[e]) - spec_stored(s.zero[g], c.scale_type)) * spec_stored(s.scale[g], c.scale_type);
      ASSERT_EQ(bits_of(dq[std::size_t(r) * c.head_dim + e]), bits_of(expected)) << label << " row " << r << " element " << e;
    }
  }
}

/// Rows shaped like KV rows and worse: Gaussian, heavy-tailed with outlier channels, one-signed, uniform,
/// tiny, and rows with many repeated values (ties for the clip threshold).
std::vector<float> random_rows(int count, int d, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<float> rows(std::size_t(count) * d);
  for (int r = 0; r < count; ++r) {
    float* x = rows.data() + std::size_t(r) * d;
    const int kind = r % 7;
    const float scale = std::pow(10.0f, float(int(rng() % 9)) - 4.0f);  // 1e-4 .. 1e4
    for (int e = 0; e < d; ++e) {
      switch (kind) {
        case 0: x[e] = normal(rng) * scale; break;
        case 1: x[e] = normal(rng) * (e % 17 == 3 ? 30.0f : 1.0f) * scale; break;  // outlier channels
        case 2: x[e] = std::fabs(normal(rng)) * scale + 5.0f * scale; break;        // one-signed
        case 3: x[e] = uniform(rng) * scale; break;
        case 4: x[e] = normal(rng) * 1e-12f; break;                                  // range < 1e-8
        case 5: x[e] = float(int(rng() % 5) - 2) * 0.25f * scale; break;             // ties, zeros
        default: x[e] = normal(rng) / (0.05f + std::fabs(uniform(rng))) * scale; break;  // heavy tails
      }
    }
  }
  return rows;
}

std::vector<Int2Config> all_configs(int d) {
  std::vector<Int2Config> configs;
  for (int g : {d, 64, 32}) {
    if (g > d || d % g != 0) continue;
    for (ScaleType t : {ScaleType::kFloat32, ScaleType::kFloat16}) {
      for (Encoding enc : {Encoding::kMinMax, Encoding::kLloydMax}) {
        for (double clip : {0.0, 0.96, 0.92, 0.5, 1.0}) {
          Int2Config c;
          c.head_dim = d;
          c.group_size = g;
          c.scale_type = t;
          c.encoding = enc;
          c.clip_ratio = clip;
          configs.push_back(c);
        }
      }
    }
  }
  return configs;
}

std::string describe(const Int2Config& c) {
  return "d=" + std::to_string(c.head_dim) + " G=" + std::to_string(c.group_size) +
         (c.scale_type == ScaleType::kFloat16 ? " f16" : " f32") + (c.encoding == Encoding::kLloydMax ? " lloyd" : " minmax") +
         " clip=" + std::to_string(c.clip_ratio);
}

Int2Config config_of(int d, int g, ScaleType t = ScaleType::kFloat32, Encoding enc = Encoding::kMinMax, double clip = 0.0) {
  Int2Config c;
  c.head_dim = d;
  c.group_size = g;
  c.scale_type = t;
  c.encoding = enc;
  c.clip_ratio = clip;
  return c;
}

// ---- Tests.

TEST(Int2Format, ClipIndicesOfTheDefaultRatios) {
  EXPECT_EQ(clip_index(int2_format::kDefaultKeyClipRatio, 128), 122);
  EXPECT_EQ(clip_index(int2_format::kDefaultValueClipRatio, 128), 117);
  EXPECT_EQ(clip_index(0.96, 128), 122);
  EXPECT_EQ(clip_index(0.92, 128), 117);
  EXPECT_EQ(clip_index(0.0, 128), -1);
  EXPECT_EQ(clip_index(-0.5, 128), -1);
  EXPECT_EQ(clip_index(1.0, 128), 127);
  EXPECT_EQ(clip_index(1e-9, 128), 0);
}

TEST(Int2Format, ValidateRejectsBadConfigs) {
  EXPECT_NO_THROW(validate(config_of(128, 128)));
  EXPECT_NO_THROW(validate(config_of(128, 64)));
  EXPECT_NO_THROW(validate(config_of(128, 32)));
  EXPECT_NO_THROW(validate(config_of(8, 8)));
  EXPECT_THROW(validate(config_of(6, 6)), std::invalid_argument);
  EXPECT_THROW(validate(config_of(128, 16)), std::invalid_argument);
  EXPECT_THROW(validate(config_of(96, 64)), std::invalid_argument);
  EXPECT_THROW(validate(config_of(0, 0)), std::invalid_argument);
  std::vector<float> row(6, 1.0f);
  std::vector<std::uint8_t> buffer(64);
  EXPECT_THROW(quantize_rows_reference(row.data(), 1, config_of(6, 6), {buffer.data(), buffer.data(), buffer.data()}),
               std::invalid_argument);
  EXPECT_THROW(quantize_rows(row.data(), 1, config_of(6, 6), {buffer.data(), buffer.data(), buffer.data()}, 2),
               std::invalid_argument);
  EXPECT_THROW(quantize_rows(row.data(), -1, config_of(8, 8), {buffer.data(), buffer.data(), buffer.data()}, 2),
               std::invalid_argument);
  EXPECT_THROW(quantize_rows_reference(row.data(), 1, config_of(8, 8), {nullptr, buffer.data(), buffer.data()}),
               std::invalid_argument);
  EXPECT_NO_THROW(quantize_rows(nullptr, 0, config_of(8, 8), {}, 4));
}

TEST(Int2Format, PackingByteOrderByHand) {
  // d = 8: byte 0 holds elements 0, 2, 4, 6 and byte 1 elements 1, 3, 5, 7, low bits first.
  const std::uint8_t codes[8] = {0, 1, 2, 3, 3, 2, 1, 0};
  std::uint8_t packed[2] = {0xff, 0xff};
  pack_codes(codes, 8, packed);
  // byte 0 = 0 | 2<<2 | 3<<4 | 1<<6 = 0b01'11'10'00; byte 1 = 1 | 3<<2 | 2<<4 | 0<<6 = 0b00'10'11'01
  EXPECT_EQ(packed[0], 0x78);
  EXPECT_EQ(packed[1], 0x2D);
  std::uint8_t unpacked[8];
  unpack_codes(packed, 8, unpacked);
  for (int e = 0; e < 8; ++e) EXPECT_EQ(unpacked[e], codes[e]);

  // The same through quantisation: x = codes with mn 0, mx 3 gives scale 1, zero −0, code = x.
  const std::vector<float> row = {0, 1, 2, 3, 3, 2, 1, 0};
  for (int threads : {0, 1}) {
    const Quantised q = threads ? quantize_fast(row, config_of(8, 8), 1) : quantize_reference(row, config_of(8, 8));
    EXPECT_EQ(q.codes[0], 0x78);
    EXPECT_EQ(q.codes[1], 0x2D);
    EXPECT_EQ(q.scale(0, 0), 1.0f);
    EXPECT_EQ(bits_of(q.zero(0, 0)), bits_of(-0.0f));
  }

  // d = 16 with every element's own code: byte i = c[i] | c[i+4] << 2 | c[i+8] << 4 | c[i+12] << 6.
  std::uint8_t codes16[16], packed16[4];
  for (int e = 0; e < 16; ++e) codes16[e] = std::uint8_t((e * 7 + e / 4) % 4);
  pack_codes(codes16, 16, packed16);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(packed16[i], codes16[i] + 4 * codes16[i + 4] + 16 * codes16[i + 8] + 64 * codes16[i + 12]) << i;
  }
}

TEST(Int2Format, PackingIsOverTheWholeRowWhateverTheGroupSize) {
  // d = 128, G = 32: group g covers elements [32g, 32g+32) = quarter g, so byte i mixes all four groups.
  std::vector<float> row(128);
  for (int e = 0; e < 128; ++e) row[e] = float((e / 32 + e) % 4);  // each group spans 0..3 → code = value
  const Quantised q = quantize_reference(row, config_of(128, 32));
  for (int i = 0; i < 32; ++i) {
    const int expected = int(row[i]) | int(row[i + 32]) << 2 | int(row[i + 64]) << 4 | int(row[i + 96]) << 6;
    EXPECT_EQ(q.codes[i], expected) << i;
  }
}

TEST(Int2Format, RoundHalfUpInFloat32) {
  // mn 0, mx 3: scale 1, zero −0, v = x + 0.5. Exact halves round up; 0.49999997f + 0.5f rounds (to even)
  // to 1.0f in float32, so it gets code 1, as in the kernels (float64 arithmetic would give 0).
  const std::vector<float> row = {0.0f, 0.5f, 1.5f, 2.5f, 3.0f, 1.0f, 2.0f, 0.49999997f};
  const Quantised q = quantize_reference(row, config_of(8, 8));
  const int expected[8] = {0, 1, 2, 3, 3, 1, 2, 1};
  for (int e = 0; e < 8; ++e) EXPECT_EQ(q.code(0, e), expected[e]) << e;
  const std::vector<float> dq = dequantize_reference(q);
  for (int e = 0; e < 8; ++e) EXPECT_EQ(dq[e], float(expected[e])) << e;
}

TEST(Int2Format, DivisionNotReciprocal) {
  // The spec divides x by scale. Find values next to a rounding boundary where multiplying by 1/scale would
  // give another code, and check both implementations follow the division.
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> uniform(1.0f, 2.0f);
  int differing = 0;
  for (int trial = 0; trial < 100000 && differing < 20; ++trial) {
    const float mx = 3.0f * uniform(rng);  // mn = 0: zero = −0, v = x / scale + −0 + 0.5
    const float scale = std::max(mx - 0.0f, 1e-8f) / 3.0f;
    const float boundary = (float(1 + trial % 3) - 0.5f) * scale;
    for (float x : {std::nextafter(boundary, 0.0f), boundary, std::nextafter(boundary, kMaxFloat)}) {
      const float by_division = x / scale + -0.0f + 0.5f, by_reciprocal = x * (1.0f / scale) + -0.0f + 0.5f;
      if (!(x < mx) || int(by_division) == int(by_reciprocal)) continue;
      ++differing;
      const std::vector<float> row = {0.0f, mx, x, x, 0.0f, mx, x, x};
      for (const Quantised& q : {quantize_reference(row, config_of(8, 8)), quantize_fast(row, config_of(8, 8), 1)}) {
        ASSERT_EQ(q.scale(0, 0), scale);
        EXPECT_EQ(int(q.code(0, 2)), int(by_division)) << x << " / " << scale;
      }
    }
  }
  EXPECT_GT(differing, 0) << "no value found where division and reciprocal differ";
}

TEST(Int2Format, MatchesTheSpecOnRandomRows) {
  for (int d : {128, 64, 256, 8}) {
    const std::vector<float> rows = random_rows(d == 8 ? 200 : 60, d, 1234u + d);
    for (const Int2Config& c : all_configs(d)) {
      expect_matches_spec(rows, c, describe(c));
      if (HasFatalFailure()) return;
    }
  }
}

TEST(Int2Format, ConstantRows) {
  for (float value : {0.7f, -2.5f, 0.0f, 1e-20f, 6e4f}) {
    const std::vector<float> row(128, value);
    const Quantised q = quantize_reference(row, config_of(128, 128));
    const float scale = 1e-8f / 3.0f;
    EXPECT_EQ(bits_of(q.scale(0, 0)), bits_of(scale)) << value;
    EXPECT_EQ(bits_of(q.zero(0, 0)), bits_of(-(value == 0.0f ? 0.0f : value) / scale)) << value;
    // v = value/scale + (−value/scale) + 0.5 = 0.5 exactly: every code 0, every byte 0.
    for (std::uint8_t byte : q.codes) EXPECT_EQ(byte, 0) << value;
    const std::vector<float> dq = dequantize_reference(q);
    for (float v : dq) {
      EXPECT_EQ(bits_of(v), bits_of((0.0f - q.zero(0, 0)) * scale)) << value;
      EXPECT_NEAR(v, value, std::fabs(value) * 1e-6f) << value;
    }
    expect_matches_spec(row, config_of(128, 128), "constant");
  }
  // −0.0 and +0.0 rows give the same bytes (the min's sign is normalised): zero = −0.0f.
  const Quantised plus = quantize_reference(std::vector<float>(32, 0.0f), config_of(32, 32));
  const Quantised minus = quantize_reference(std::vector<float>(32, -0.0f), config_of(32, 32));
  EXPECT_EQ(plus.zeros, minus.zeros);
  EXPECT_EQ(bits_of(plus.zero(0, 0)), bits_of(-0.0f));
}

TEST(Int2Format, HugeRangesStayFinite) {
  // ±3e38: mx − mn overflows float32, where the kernels' formula gives scale = inf (and NaN on dequant).
  std::vector<float> row(128);
  for (int e = 0; e < 128; ++e) row[e] = (e % 3 == 0 ? 3e38f : (e % 3 == 1 ? -3e38f : 1e30f));
  for (const Int2Config& c : {config_of(128, 128), config_of(128, 32)}) {
    for (const Quantised& q : {quantize_reference(row, c), quantize_fast(row, c, 2)}) {
      for (int g = 0; g < c.groups(); ++g) {
        EXPECT_TRUE(std::isfinite(q.scale(0, g)));
        EXPECT_EQ(q.scale(0, g), 3e38f / 3.0f - -3e38f / 3.0f);
        EXPECT_FLOAT_EQ(q.zero(0, g), 1.5f);
      }
      for (int e = 0; e < 128; ++e) {
        const int expected = e % 3 == 0 ? 3 : (e % 3 == 1 ? 0 : -1);
        if (expected < 0) {
          EXPECT_TRUE(q.code(0, e) == 1 || q.code(0, e) == 2) << e;  // v ≈ 2 (zero ≈ 1.5)
        } else {
          EXPECT_EQ(q.code(0, e), expected) << e;
        }
      }
      const std::vector<float> dq = dequantize_reference(q);
      for (int e = 0; e < 128; ++e) {
        ASSERT_TRUE(std::isfinite(dq[e])) << e;
        if (e % 3 != 2) {
          EXPECT_NEAR(dq[e] / row[e], 1.0f, 1e-6f) << e;
        }
      }
    }
    expect_matches_spec(row, c, "±3e38");
  }
  // The extremes of float32: finite scale and zero always; finite dequantised values up to |x| = 3.4e38.
  for (float big : {kMaxFloat, 3.4e38f, 1e38f, 2e38f}) {
    const std::vector<float> extremes = {big, -big, 0.0f, big / 2, -big, big, 1.0f, -1.0f};
    const Quantised q = quantize_reference(extremes, config_of(8, 8));
    EXPECT_TRUE(std::isfinite(q.scale(0, 0)) && std::isfinite(q.zero(0, 0))) << big;
    if (big <= 3.4e38f) {
      for (float v : dequantize_reference(q)) EXPECT_TRUE(std::isfinite(v)) << big;
    }
  }
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::vector<float> pairs;
  for (int t = 0; t < 20000; ++t) {
    float a = 3.4e38f * (1.0f - unit(rng) * (t % 3 == 0 ? 1e-6f : 1.0f));
    float b = t % 4 == 0 ? 0.0f : (t % 4 == 1 ? -a * unit(rng) : (t % 4 == 2 ? a * unit(rng) : -3.4e38f * (1.0f - 1e-6f * unit(rng))));
    if (t % 2) a = -a, b = -b;
    pairs.insert(pairs.end(), {a, b, a, b});
  }
  for (float v : dequantize_reference(quantize_reference(pairs, config_of(4, 4)))) ASSERT_TRUE(std::isfinite(v));
  // A range just inside float32 uses the kernels' formula unchanged.
  const std::vector<float> inside = {2e38f, -1e38f, 0.0f, 1e38f};
  const Quantised q = quantize_reference(inside, config_of(4, 4));
  EXPECT_EQ(q.scale(0, 0), (2e38f - -1e38f) / 3.0f);
  EXPECT_EQ(q.zero(0, 0), 1e38f / q.scale(0, 0));
  // A constant group of huge values: −mn/scale overflows with scale = 1e-8/3, so scale = |x|/3.
  for (float value : {2e31f, -3e38f}) {
    const std::vector<float> constant(32, value);
    const Quantised qc = quantize_reference(constant, config_of(32, 32));
    EXPECT_EQ(qc.scale(0, 0), std::fabs(value) / 3.0f);
    for (float v : dequantize_reference(qc)) EXPECT_NEAR(v / value, 1.0f, 1e-6f);
    expect_matches_spec(constant, config_of(32, 32), "huge constant");
  }
}

TEST(Int2Format, TinyValues) {
  std::vector<float> rows;
  for (float magnitude : {1e-30f, 1e-40f /* subnormal */, 1e-9f, 3e-9f}) {
    for (int e = 0; e < 64; ++e) rows.push_back(magnitude * float((e * 37) % 11 - 5));
  }
  for (const Int2Config& c : {config_of(64, 64), config_of(64, 32), config_of(64, 64, ScaleType::kFloat16)}) {
    expect_matches_spec(rows, c, describe(c));
  }
  const Quantised q = quantize_reference(rows, config_of(64, 64));
  EXPECT_EQ(q.scale(0, 0), 1e-8f / 3.0f);  // range 1e-29 < 1e-8
}

TEST(Int2Format, NonFiniteInputIsRejectedNamingRowAndElement) {
  const float nan = std::numeric_limits<float>::quiet_NaN(), inf = std::numeric_limits<float>::infinity();
  for (float bad : {nan, inf, -inf}) {
    std::vector<float> rows = random_rows(1000, 128, 5);
    rows[700 * 128 + 5] = bad;
    rows[900 * 128 + 0] = bad;
    const Int2Config c = config_of(128, 32, ScaleType::kFloat32, Encoding::kMinMax, 0.96);
    Quantised q(1000, c);
    std::string reference_message;
    try {
      quantize_rows_reference(rows.data(), 1000, c, q.rows());
      ADD_FAILURE() << "no exception";
    } catch (const std::invalid_argument& error) {
      reference_message = error.what();
    }
    EXPECT_NE(reference_message.find("row 700, element 5"), std::string::npos) << reference_message;
    EXPECT_NE(reference_message.find(std::isnan(bad) ? "NaN" : (bad > 0 ? "+inf" : "-inf")), std::string::npos)
        << reference_message;
    for (int threads : {1, 3, 8}) {
      try {
        quantize_rows(rows.data(), 1000, c, q.rows(), threads);
        ADD_FAILURE() << "no exception";
      } catch (const std::invalid_argument& error) {
        EXPECT_EQ(std::string(error.what()), reference_message) << threads;
      }
    }
  }
}

TEST(Int2Format, ClippedRowMaxIsTheIndexedMagnitude) {
  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (double ratio : {0.96, 0.92}) {
    const int idx = clip_index(ratio, 128);
    for (int trial = 0; trial < 50; ++trial) {
      std::vector<float> row(128);
      for (float& v : row) v = normal(rng);
      row[3] = 50.0f;  // the largest positive and the most negative are beyond τ
      row[77] = -40.0f;
      std::vector<float> sorted(128);
      for (int e = 0; e < 128; ++e) sorted[e] = std::fabs(row[e]);
      std::sort(sorted.begin(), sorted.end());
      const float tau = sorted[idx];
      const Int2Config c = config_of(128, 128, ScaleType::kFloat32, Encoding::kMinMax, ratio);
      for (const Quantised& q : {quantize_reference(row, c), quantize_fast(row, c, 1)}) {
        // Clipped to [−τ, τ] with both ends reached: mn = −τ, mx = τ.
        ASSERT_EQ(q.scale(0, 0), (tau - -tau) / 3.0f) << ratio << " " << trial;
        ASSERT_EQ(q.zero(0, 0), tau / q.scale(0, 0));
        const std::vector<float> dq = dequantize_reference(q);
        float max_magnitude = 0.0f;
        for (float v : dq) max_magnitude = std::max(max_magnitude, std::fabs(v));
        EXPECT_NEAR(max_magnitude, tau, tau * 1e-6f);
        for (int e = 0; e < 128; ++e) {
          if (row[e] >= tau) {
            EXPECT_EQ(q.code(0, e), 3);
          }
          if (row[e] <= -tau) {
            EXPECT_EQ(q.code(0, e), 0);
          }
        }
      }
    }
  }
}

TEST(Int2Format, MinMaxErrorIsAtMostHalfAScale) {
  const std::vector<float> rows = random_rows(300, 128, 99);
  for (int g : {128, 64, 32}) {
    for (double clip : {0.0, 0.96, 0.92}) {
      const Int2Config c = config_of(128, g, ScaleType::kFloat32, Encoding::kMinMax, clip);
      const Quantised q = quantize_reference(rows, c);
      const std::vector<float> dq = dequantize_reference(q);
      for (int r = 0; r < 300; ++r) {
        const SpecRow s = spec_row(rows.data() + r * 128, c);  // the clipped row
        for (int e = 0; e < 128; ++e) {
          const float scale = q.scale(r, e / g);
          const float error = std::fabs(dq[r * 128 + e] - s.clipped[e]);
          ASSERT_LE(error, scale * 0.5f * (1.0f + 1e-4f) + std::fabs(s.clipped[e]) * 1e-6f)
              << "G=" << g << " clip=" << clip << " row " << r << " element " << e;
        }
      }
    }
  }
}

TEST(Int2Format, GroupsAreIndependent) {
  // d = 128, G = 32: a large value in group 2 changes only group 2's scale.
  std::vector<float> row(128);
  for (int e = 0; e < 128; ++e) row[e] = float(e % 8) - 3.5f;
  const Quantised before = quantize_reference(row, config_of(128, 32));
  row[70] = 1000.0f;
  const Quantised after = quantize_reference(row, config_of(128, 32));
  for (int g = 0; g < 4; ++g) {
    if (g == 2) {
      EXPECT_EQ(after.scale(0, g), (1000.0f - -3.5f) / 3.0f);
    } else {
      EXPECT_EQ(after.scale(0, g), before.scale(0, g)) << g;
      EXPECT_EQ(after.scale(0, g), 7.0f / 3.0f) << g;
    }
  }
  EXPECT_EQ(config_of(128, 128).groups(), 1);
  EXPECT_EQ(config_of(128, 64).groups(), 2);
  EXPECT_EQ(config_of(128, 32).groups(), 4);
}

TEST(Int2Format, Float16ScaleStorage) {
  const std::vector<float> rows = random_rows(100, 128, 17);
  int saturated = 0;
  for (int g : {128, 32}) {
    for (Encoding enc : {Encoding::kMinMax, Encoding::kLloydMax}) {
      const Quantised q32 = quantize_reference(rows, config_of(128, g, ScaleType::kFloat32, enc, 0.96));
      const Quantised q16 = quantize_reference(rows, config_of(128, g, ScaleType::kFloat16, enc, 0.96));
      EXPECT_EQ(q16.scales.size() * 2, q32.scales.size());
      EXPECT_EQ(q16.codes, q32.codes);  // codes come from the float32 scale and zero
      for (int r = 0; r < 100; ++r) {
        for (int k = 0; k < 128 / g; ++k) {
          std::uint16_t s16, z16;
          std::memcpy(&s16, q16.scales.data() + 2 * (r * (128 / g) + k), 2);
          std::memcpy(&z16, q16.zeros.data() + 2 * (r * (128 / g) + k), 2);
          EXPECT_EQ(s16, spec_float16(q32.scale(r, k))) << r;
          EXPECT_EQ(z16, spec_float16(q32.zero(r, k))) << r;
          saturated += (s16 & 0x7fff) == 0x7bff;
        }
      }
      // Dequantisation uses the stored values widened back.
      const std::vector<float> dq = dequantize_reference(q16);
      for (int r = 0; r < 100; ++r) {
        for (int e = 0; e < 128; ++e) {
          const float expected = (float(q16.code(r, e)) - float16_to_float(spec_float16(q32.zero(r, e / g)))) *
                                 float16_to_float(spec_float16(q32.scale(r, e / g)));
          ASSERT_EQ(bits_of(dq[r * 128 + e]), bits_of(expected));
        }
      }
    }
  }
  EXPECT_GT(saturated, 0);  // the 1e4-scaled heavy-tailed rows exceed the float16 range
  // Beyond the float16 range: saturated to ±65504, never inf.
  std::vector<float> wide = {-1.5e5f, 1.5e5f, 0.0f, 1.0f};
  std::vector<float> offset = {1000.0f, 1000.25f, 1000.5f, 1000.0f};  // zero = −1000/(0.5/3) = −6000 fits
  std::vector<float> far = {10000.0f, 10000.25f, 10000.0f, 10000.0f};  // zero = −1.2e5 does not
  const Quantised qw = quantize_reference(wide, config_of(4, 4, ScaleType::kFloat16));
  EXPECT_EQ(qw.scale(0, 0), 65504.0f);
  const Quantised qo = quantize_reference(offset, config_of(4, 4, ScaleType::kFloat16));
  EXPECT_EQ(qo.zero(0, 0), -6000.0f);
  const Quantised qf = quantize_reference(far, config_of(4, 4, ScaleType::kFloat16));
  EXPECT_EQ(qf.zero(0, 0), -65504.0f);
  for (const Quantised* q : {&qw, &qo, &qf}) {
    for (float v : dequantize_reference(*q)) EXPECT_TRUE(std::isfinite(v));
  }
  EXPECT_EQ(to_stored_float16(1e9f), 0x7bff);
  EXPECT_EQ(to_stored_float16(-1e9f), 0xfbff);
  EXPECT_EQ(to_stored_float16(1.0f), 0x3c00);
  EXPECT_EQ(to_stored_float16(1e-9f), 0x0000);
}

TEST(Int2Format, LloydMaxCodesFollowTheThresholds) {
  const std::vector<float> rows = random_rows(200, 128, 23);
  for (int g : {128, 64, 32}) {
    const Int2Config c = config_of(128, g, ScaleType::kFloat32, Encoding::kLloydMax);
    const Quantised q = quantize_reference(rows, c);
    const std::vector<float> dq = dequantize_reference(q);
    int checked = 0;
    for (int r = 0; r < 200; ++r) {
      for (int k = 0; k < 128 / g; ++k) {
        // Statistics in float64, independently of any summation order.
        double mean = 0, var = 0;
        for (int e = 0; e < g; ++e) mean += rows[r * 128 + k * g + e];
        mean /= g;
        for (int e = 0; e < g; ++e) var += (rows[r * 128 + k * g + e] - mean) * (rows[r * 128 + k * g + e] - mean);
        const double sigma = std::max(std::sqrt(var / g), 1e-8);
        EXPECT_NEAR(q.scale(r, k) / (1.16739 * sigma), 1.0, 1e-4) << r;
        EXPECT_NEAR(q.zero(r, k), 1.5 - mean / (1.16739 * sigma), 1e-3 * std::max(1.0, std::fabs(mean / sigma))) << r;
        for (int e = 0; e < g; ++e) {
          const double z = (rows[r * 128 + k * g + e] - mean) / sigma;
          if (std::fabs(std::fabs(z) - 0.98107) < 1e-3 || std::fabs(z) < 1e-3) continue;  // too close to call
          const int expected = (z >= -0.98107) + (z >= 0) + (z >= 0.98107);
          ASSERT_EQ(q.code(r, k * g + e), expected) << "G=" << g << " row " << r << " z " << z;
          // Reconstruction levels μ + σ·1.16739·{−1.5, −0.5, 0.5, 1.5}.
          const double level = mean + 1.16739 * sigma * (expected - 1.5);
          ASSERT_NEAR(dq[r * 128 + k * g + e], level, 1e-4 * (std::fabs(mean) + sigma)) << r;
          ++checked;
        }
      }
    }
    EXPECT_GT(checked, 20000);
  }
  // Huge values where the statistics overflow are rejected, naming the row and group.
  std::vector<float> huge(64, 1e20f);
  huge[1] = -1e20f;
  try {
    quantize_rows_reference(huge.data(), 1, config_of(64, 32, ScaleType::kFloat32, Encoding::kLloydMax), Quantised(1, config_of(64, 32)).rows());
    ADD_FAILURE() << "no exception";
  } catch (const std::invalid_argument& error) {
    EXPECT_NE(std::string(error.what()).find("row 0, group 0"), std::string::npos) << error.what();
  }
}

TEST(Int2Format, LloydMaxConstantGroupUsesTheSigmaGuard) {
  const std::vector<float> row(32, 0.25f);
  const Quantised q = quantize_reference(row, config_of(32, 32, ScaleType::kFloat32, Encoding::kLloydMax));
  EXPECT_EQ(q.scale(0, 0), 1.16739f * 1e-8f);
  EXPECT_EQ(q.zero(0, 0), 1.5f - 0.25f / (1.16739f * 1e-8f));
  for (int e = 0; e < 32; ++e) EXPECT_EQ(q.code(0, e), 2);  // z = 0 → [z ≥ −t] + [z ≥ 0] = 2
}

TEST(Int2Format, GroupSumOrder) {
  // 32 strided lanes, then pairwise halving; differs from a left-to-right sum for these values.
  std::vector<float> v(64, 0.0f);
  v[0] = 1e8f;
  v[32] = -1e8f;
  v[1] = 1.0f;
  v[33] = 1.0f;  // lane 0: 1e8 − 1e8 = 0; lane 1: 2; sum 2. Left to right: 1e8+1 = 1e8, ... → 0 + 1 = 1
  EXPECT_EQ(group_sum(v.data(), 64), 2.0f);
  EXPECT_EQ(group_sum(v.data(), 64), spec_sum(v));
  float left_to_right = 0.0f;
  for (float x : v) left_to_right += x;
  EXPECT_NE(left_to_right, 2.0f);
}

TEST(Int2Format, FastPathIsBitIdenticalToTheReference) {
  for (int d : {128, 64, 256, 8}) {
    const int count = d == 128 ? 1100 : 300;
    const std::vector<float> rows = random_rows(count, d, 4321u + d);
    for (const Int2Config& c : all_configs(d)) {
      const Quantised reference = quantize_reference(rows, c);
      const std::vector<float> dq_reference = dequantize_reference(reference);
      for (int threads : {1, 2, 3, 8}) {
        const Quantised fast = quantize_fast(rows, c, threads);
        ASSERT_EQ(fast.codes, reference.codes) << describe(c) << " threads " << threads;
        ASSERT_EQ(fast.scales, reference.scales) << describe(c) << " threads " << threads;
        ASSERT_EQ(fast.zeros, reference.zeros) << describe(c) << " threads " << threads;
        std::vector<float> dq(dq_reference.size());
        dequantize_rows(fast.const_rows(), count, c, dq.data(), threads);
        ASSERT_EQ(0, std::memcmp(dq.data(), dq_reference.data(), dq.size() * sizeof(float)))
            << describe(c) << " threads " << threads;
      }
    }
  }
}

TEST(Int2Format, FastPathOnAdversarialRows) {
  std::vector<float> rows;
  const auto add = [&](std::vector<float> row) { rows.insert(rows.end(), row.begin(), row.end()); };
  add(std::vector<float>(128, 0.0f));
  add(std::vector<float>(128, -0.0f));
  add(std::vector<float>(128, 3.25f));
  std::vector<float> mixed_zeros(128);
  for (int e = 0; e < 128; ++e) mixed_zeros[e] = e % 2 ? 0.0f : -0.0f;
  mixed_zeros[100] = 1.0f;
  add(mixed_zeros);
  std::vector<float> huge(128);
  for (int e = 0; e < 128; ++e) huge[e] = e % 2 ? 3e38f : -kMaxFloat;
  add(huge);
  add(std::vector<float>(128, 2e31f));
  std::vector<float> ramp(128);
  for (int e = 0; e < 128; ++e) ramp[e] = float(e) * 0.03125f - 2.0f;  // many exact halves
  add(ramp);
  std::vector<float> spikes(128, 1e-3f);
  spikes[7] = 1e6f;
  spikes[127] = -1e6f;
  add(spikes);
  for (int g : {128, 64, 32}) {
    for (ScaleType t : {ScaleType::kFloat32, ScaleType::kFloat16}) {
      for (double clip : {0.0, 0.96, 0.92, 1.0, 0.01}) {
        const Int2Config c = config_of(128, g, t, Encoding::kMinMax, clip);
        const Quantised reference = quantize_reference(rows, c);
        const Quantised fast = quantize_fast(rows, c, 2);
        ASSERT_EQ(fast.codes, reference.codes) << describe(c);
        ASSERT_EQ(fast.scales, reference.scales) << describe(c);
        ASSERT_EQ(fast.zeros, reference.zeros) << describe(c);
        for (float v : dequantize_reference(reference)) ASSERT_TRUE(std::isfinite(v)) << describe(c);
      }
    }
  }
}

TEST(Int2Format, InputIsNotModifiedAndScalesMayBeUnaligned) {
  const std::vector<float> rows = random_rows(20, 128, 3);
  const std::vector<float> copy = rows;
  const Int2Config c = config_of(128, 32, ScaleType::kFloat16, Encoding::kMinMax, 0.92);
  const Quantised aligned = quantize_reference(rows, c);
  std::vector<std::uint8_t> codes(20 * 32), scales(20 * 4 * 2 + 1), zeros(20 * 4 * 2 + 3);
  quantize_rows(rows.data(), 20, c, {codes.data(), scales.data() + 1, zeros.data() + 3}, 2);
  EXPECT_EQ(rows, copy);
  EXPECT_EQ(codes, aligned.codes);
  EXPECT_TRUE(std::equal(aligned.scales.begin(), aligned.scales.end(), scales.begin() + 1));
  EXPECT_TRUE(std::equal(aligned.zeros.begin(), aligned.zeros.end(), zeros.begin() + 3));
  std::vector<float> dq(20 * 128);
  dequantize_rows({codes.data(), scales.data() + 1, zeros.data() + 3}, 20, c, dq.data(), 1);
  EXPECT_EQ(dq, dequantize_reference(aligned));
}

}  // namespace
}  // namespace oscar::runtime
