// The literature's KV quantizers (kv_quantizer.h, baseline_quantizers.h) against their definitions, written out
// again here: nearest levels found by search rather than thresholds, rotations as dense matrices, Lloyd–Max
// levels from an independent numerical Lloyd iteration, and bits counted by hand.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "runtime/baseline_quantizers.h"
#include "runtime/int2_quantize.h"
#include "runtime/kv_quantizer.h"
#include "runtime/lloyd_max.h"
#include "runtime/low_rank.h"

#ifndef OSCAR_TESTS_RUNTIME_ONLY
#include <Eigen/SVD>
#endif

namespace oscar::runtime {
namespace {

/// Standard normal samples by Box–Muller from std::mt19937_64 bits (the same on every platform).
std::vector<double> gaussian(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  const auto uniform = [&] { return (double(rng() >> 11) + 0.5) * 0x1p-53; };  // in (0, 1)
  std::vector<double> out(n);
  for (auto& x : out) x = std::sqrt(-2.0 * std::log(uniform())) * std::cos(2.0 * M_PI * uniform());
  return out;
}

std::vector<float> gaussian_rows(std::size_t n, std::uint64_t seed, double sigma = 1.0) {
  const std::vector<double> g = gaussian(n, seed);
  std::vector<float> out(n);
  for (std::size_t i = 0; i < n; ++i) out[i] = float(sigma * g[i]);
  return out;
}

/// ‖a − b‖ / ‖a‖ over everything.
double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0.0, den = 0.0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(a[i]) * a[i];
  }
  return std::sqrt(num / den);
}

double f16(double v) { return float16_to_float(float_to_float16(float(v))); }

/// Index of the value of `levels` nearest to x (by search, not by thresholds).
int nearest(const std::vector<double>& levels, double x) {
  int best = 0;
  for (int i = 1; i < int(levels.size()); ++i) {
    if (std::fabs(x - levels[i]) < std::fabs(x - levels[best])) best = i;
  }
  return best;
}

/// Dense normalised Sylvester Hadamard, H[i][j] = (−1)^popcount(i & j)/√d.
std::vector<double> dense_hadamard(int d) {
  std::vector<double> h(std::size_t(d) * d);
  for (int i = 0; i < d; ++i) {
    for (int j = 0; j < d; ++j) h[std::size_t(i) * d + j] = (__builtin_popcount(unsigned(i & j)) % 2 ? -1.0 : 1.0) / std::sqrt(double(d));
  }
  return h;
}

struct Reconstruction {
  std::vector<float> out;
  double bits = 0.0;
};

Reconstruction run(const KvQuantizer& q, const std::vector<float>& rows, int tokens, int heads, int d) {
  Reconstruction r;
  r.out.assign(rows.size(), 0.0f);
  r.bits = q.reconstruct(rows.data(), tokens, heads, d, r.out.data());
  return r;
}

// ---- factory

TEST(KvQuantizerFactory, NamesGranulesAndErrors) {
  const std::vector<std::string> names = kv_quantizer_names();
  ASSERT_EQ(names.size(), 6u);
  for (const std::string& name : names) {
    for (KvKind kind : {KvKind::kKey, KvKind::kValue}) {
      const auto q = make_kv_quantizer(name, kind, {});
      const int expected_granule = name == "kivi2" && kind == KvKind::kKey ? 32 : 1;
      EXPECT_EQ(q->granule(), expected_granule) << name;
      EXPECT_EQ(q->whole_sequence(), name == "eoptshrinkq") << name;
    }
  }
  EXPECT_THROW(make_kv_quantizer("kivi", KvKind::kKey, {}), std::invalid_argument);
  QuantizerOptions bad;
  bad.turboquant_bits = 9;
  EXPECT_THROW(make_kv_quantizer("turboquant", KvKind::kKey, bad), std::invalid_argument);
}

TEST(KvQuantizerFactory, RejectsBadInputs) {
  std::vector<float> rows = gaussian_rows(40 * 96, 1), out(rows.size());
  EXPECT_THROW(make_kv_quantizer("turboquant", KvKind::kKey, {})->reconstruct(rows.data(), 40, 1, 96, out.data()),
               std::invalid_argument);  // d not a power of two
  EXPECT_THROW(make_kv_quantizer("quarot", KvKind::kKey, {})->reconstruct(rows.data(), 40, 1, 96, out.data()),
               std::invalid_argument);
  EXPECT_THROW(make_kv_quantizer("kivi2", KvKind::kKey, {})->reconstruct(rows.data(), 40, 1, 96, out.data()),
               std::invalid_argument);  // 40 tokens: not whole granules
  for (const std::string& name : kv_quantizer_names()) {  // an empty segment stores nothing
    EXPECT_EQ(make_kv_quantizer(name, KvKind::kKey, {})->reconstruct(rows.data(), 0, 2, 64, out.data()), 0.0) << name;
  }
  rows[123] = std::nanf("");
  for (const std::string& name : kv_quantizer_names()) {
    EXPECT_THROW(make_kv_quantizer(name, KvKind::kValue, {})->reconstruct(rows.data(), 32, 1, 64, out.data()),
                 std::invalid_argument) << name;
  }
}

// ---- naive-sym

TEST(NaiveSymmetric, NearestMidRiseLevelOfTheStoredScale) {
  const int tokens = 7, heads = 3, d = 128;
  const std::vector<float> rows = gaussian_rows(std::size_t(tokens) * heads * d, 2, 3.0);
  for (int g : {128, 32}) {
    QuantizerOptions options;
    options.group_size = g;
    const Reconstruction r = run(*make_kv_quantizer("naive-sym", KvKind::kKey, options), rows, tokens, heads, d);
    for (std::size_t start = 0; start < rows.size(); start += g) {
      double amax = 0.0;
      for (int i = 0; i < g; ++i) amax = std::max(amax, std::fabs(double(rows[start + i])));
      const double s = f16(amax / 1.5);
      const std::vector<double> levels = {-1.5 * s, -0.5 * s, 0.5 * s, 1.5 * s};
      for (int i = 0; i < g; ++i) {
        ASSERT_EQ(r.out[start + i], float(levels[nearest(levels, rows[start + i])])) << "g " << g << " at " << start + i;
      }
    }
    EXPECT_DOUBLE_EQ(r.bits / rows.size(), 2.0 + 16.0 / g);  // 2.125 at G = 128, 2.5 at G = 32
  }
}

// ---- naive-asym and quarot: the OSCAR INT2 format

std::vector<float> int2_round_trip(const std::vector<float>& rows, const Int2Config& config) {
  const std::int64_t count = std::int64_t(rows.size()) / config.head_dim;
  std::vector<std::uint8_t> codes(count * config.packed_bytes()), scales(count * config.groups() * config.scale_bytes()),
      zeros(scales.size());
  std::vector<float> out(rows.size());
  quantize_rows_reference(rows.data(), count, config, {codes.data(), scales.data(), zeros.data()});
  dequantize_rows_reference({codes.data(), scales.data(), zeros.data()}, count, config, out.data());
  return out;
}

TEST(NaiveAsymmetric, IsTheInt2FormatWithoutRotation) {
  const int tokens = 9, heads = 2, d = 128;
  const std::vector<float> rows = gaussian_rows(std::size_t(tokens) * heads * d, 3);
  for (ScaleType type : {ScaleType::kFloat32, ScaleType::kFloat16}) {
    QuantizerOptions options;
    options.value_int2.scale_type = type;
    const Reconstruction r = run(*make_kv_quantizer("naive-asym", KvKind::kValue, options), rows, tokens, heads, d);
    Int2Config config = options.value_int2;
    EXPECT_EQ(r.out, int2_round_trip(rows, config));
    EXPECT_DOUBLE_EQ(r.bits / rows.size(), type == ScaleType::kFloat32 ? 2.5 : 2.25);
  }
  // Without clipping, the min-max formula by hand: x̂ = (code − zero)·scale, code = round-half-up.
  QuantizerOptions options;
  options.key_int2.clip_ratio = 0.0;
  const Reconstruction r = run(*make_kv_quantizer("naive-asym", KvKind::kKey, options), rows, tokens, heads, d);
  for (std::size_t start = 0; start < rows.size(); start += d) {
    const auto [mn, mx] = std::minmax_element(rows.begin() + start, rows.begin() + start + d);
    const double scale = (double(*mx) - *mn) / 3.0, zero = -*mn / scale;
    for (int i = 0; i < d; ++i) {
      const double code = std::min(3.0, std::floor(rows[start + i] / scale + zero + 0.5));
      ASSERT_NEAR(r.out[start + i], (code - zero) * scale, 1e-5) << start + i;
    }
  }
}

TEST(QuaRot, HadamardThenInt2ThenBack) {
  const int tokens = 6, heads = 2, d = 64;
  const std::vector<float> rows = gaussian_rows(std::size_t(tokens) * heads * d, 4);
  const std::vector<double> h = dense_hadamard(d);
  const auto multiply = [&](const std::vector<float>& x) {  // every row times H (= Hᵀ)
    std::vector<float> y(x.size());
    for (std::size_t start = 0; start < x.size(); start += d) {
      for (int j = 0; j < d; ++j) {
        double s = 0.0;
        for (int i = 0; i < d; ++i) s += double(x[start + i]) * h[std::size_t(i) * d + j];
        y[start + j] = float(s);
      }
    }
    return y;
  };
  QuantizerOptions options;
  const Reconstruction r = run(*make_kv_quantizer("quarot", KvKind::kKey, options), rows, tokens, heads, d);
  Int2Config config = options.key_int2;
  config.head_dim = config.group_size = d;
  const std::vector<float> expected = multiply(int2_round_trip(multiply(rows), config));
  for (std::size_t i = 0; i < rows.size(); ++i) ASSERT_NEAR(r.out[i], expected[i], 1e-5) << i;
  EXPECT_DOUBLE_EQ(r.bits / rows.size(), 2.0 + 64.0 / d);  // float32 scale and zero per row of 64
}

// ---- KIVI

/// KIVI's group by hand: min, (max − min)/(2^b − 1), both float16; code = nearest integer, clamped.
void expect_kivi_group(const std::vector<float>& x, const std::vector<float>& got, int bits) {
  const double mn = *std::min_element(x.begin(), x.end()), mx = *std::max_element(x.begin(), x.end());
  const double scale = f16((mx - mn) / ((1 << bits) - 1)), offset = f16(mn);
  std::vector<double> levels;
  for (int c = 0; c < (1 << bits); ++c) levels.push_back(c * scale + offset);
  for (std::size_t i = 0; i < x.size(); ++i) ASSERT_EQ(got[i], float(levels[nearest(levels, x[i])])) << i;
}

TEST(Kivi, KeysPerChannelOverTokenGroupsValuesPerToken) {
  const int tokens = 64, heads = 2, d = 128;
  std::vector<float> rows = gaussian_rows(std::size_t(tokens) * heads * d, 5);
  for (int t = 0; t < tokens; ++t) rows[(std::size_t(t) * heads + 1) * d + 7] += 40.0f;  // an outlier channel
  const Reconstruction keys = run(*make_kv_quantizer("kivi2", KvKind::kKey, {}), rows, tokens, heads, d);
  for (int t0 = 0; t0 < tokens; t0 += 32) {
    for (int hc = 0; hc < heads * d; ++hc) {
      std::vector<float> x, got;
      for (int t = t0; t < t0 + 32; ++t) {
        x.push_back(rows[std::size_t(t) * heads * d + hc]);
        got.push_back(keys.out[std::size_t(t) * heads * d + hc]);
      }
      expect_kivi_group(x, got, 2);
    }
  }
  EXPECT_DOUBLE_EQ(keys.bits / rows.size(), 2.0 + 2.0 * 16 / 32);  // 3.0
  const Reconstruction values = run(*make_kv_quantizer("kivi2", KvKind::kValue, {}), rows, tokens, heads, d);
  for (std::size_t start = 0; start < rows.size(); start += 32) {
    expect_kivi_group({rows.begin() + start, rows.begin() + start + 32},
                      {values.out.begin() + start, values.out.begin() + start + 32}, 2);
  }
  EXPECT_DOUBLE_EQ(values.bits / rows.size(), 2.0 + 2.0 * 16 / 32);
  // d = 16 < 32: one group per row.
  const std::vector<float> small = gaussian_rows(5 * 16, 6);
  EXPECT_DOUBLE_EQ(run(*make_kv_quantizer("kivi2", KvKind::kValue, {}), small, 5, 1, 16).bits / small.size(), 2.0 + 32.0 / 16);
}

TEST(Kivi, ErrorFallsWithBits) {
  const int tokens = 64, heads = 2, d = 128;
  const std::vector<float> rows = gaussian_rows(std::size_t(tokens) * heads * d, 7);
  for (KvKind kind : {KvKind::kKey, KvKind::kValue}) {
    double previous = 1e300;  // 1-bit min-max (levels: min and max) errs by more than the signal itself
    for (int bits = 1; bits <= 8; ++bits) {
      const double e = relative_error(rows, run(KiviQuantizer(kind, 32, bits), rows, tokens, heads, d).out);
      EXPECT_LT(e, previous) << bits;
      previous = e;
    }
  }
}

// ---- Lloyd–Max

/// Lloyd's iteration for N(0, 1) on a midpoint-rule grid over [−12, 12] (step 1e-4), with prefix sums: an
/// independent numerical route to the levels.
struct GridGaussian {
  static constexpr double kLo = -12.0, kStep = 1e-4;
  std::vector<double> mass, moment;  // prefix sums of φ(x)h and xφ(x)h
  GridGaussian() {
    const int n = int(24.0 / kStep);
    mass.assign(n + 1, 0.0);
    moment.assign(n + 1, 0.0);
    for (int k = 0; k < n; ++k) {
      const double x = kLo + (k + 0.5) * kStep, w = std::exp(-0.5 * x * x) / std::sqrt(2.0 * M_PI) * kStep;
      mass[k + 1] = mass[k] + w;
      moment[k + 1] = moment[k] + w * x;
    }
  }
  int index(double t) const { return std::clamp(int(std::lround((t - kLo) / kStep)), 0, int(mass.size()) - 1); }
  /// Centroids of the cells between consecutive thresholds (−∞ and +∞ at the ends).
  std::vector<double> centroids(const std::vector<double>& thresholds) const {
    std::vector<double> c;
    for (std::size_t i = 0; i <= thresholds.size(); ++i) {
      const int a = i == 0 ? 0 : index(thresholds[i - 1]);
      const int b = i == thresholds.size() ? int(mass.size()) - 1 : index(thresholds[i]);
      c.push_back((moment[b] - moment[a]) / (mass[b] - mass[a]));
    }
    return c;
  }
  std::vector<double> lloyd(int bits) const {
    const int n = 1 << bits;
    std::vector<double> c(n);
    for (int i = 0; i < n; ++i) c[i] = -2.0 + 4.0 * (i + 0.5) / n;
    for (int it = 0; it < 100000; ++it) {
      std::vector<double> t;
      for (int i = 0; i + 1 < n; ++i) t.push_back(0.5 * (c[i] + c[i + 1]));
      const std::vector<double> next = centroids(t);
      double change = 0.0;
      for (int i = 0; i < n; ++i) change = std::max(change, std::fabs(next[i] - c[i]));
      c = next;
      if (change < 1e-12) break;
    }
    return c;
  }
};

TEST(LloydMax, LevelsMatchAnIndependentLloydIterationAndTheKnownValues) {
  const GridGaussian grid;
  const std::vector<std::vector<double>> known = {{0.7979}, {0.4528, 1.5104}, {0.2451, 0.7560, 1.3439, 2.1520}};
  for (int bits = 1; bits <= 3; ++bits) {
    const std::vector<double> levels = gaussian_lloyd_max_levels(bits), independent = grid.lloyd(bits);
    ASSERT_EQ(levels.size(), std::size_t(1) << bits);
    for (std::size_t i = 0; i < levels.size(); ++i) EXPECT_NEAR(levels[i], independent[i], 1e-3) << bits << " " << i;
    const int half = int(levels.size()) / 2;
    for (int i = 0; i < half; ++i) {
      EXPECT_NEAR(levels[half + i], known[bits - 1][i], 1e-3) << bits << " " << i;
      EXPECT_EQ(levels[half - 1 - i], -levels[half + i]);
    }
  }
  EXPECT_NEAR(GaussianLloydMax(1).distortion(), 0.3634, 1e-4);
  EXPECT_NEAR(GaussianLloydMax(2).distortion(), 0.1175, 1e-4);
  EXPECT_NEAR(GaussianLloydMax(3).distortion(), 0.03454, 1e-5);
}

TEST(LloydMax, EightBitsAreCentroidsOfTheirCells) {
  const GaussianLloydMax q(8);
  ASSERT_EQ(q.levels(), 256);
  EXPECT_TRUE(std::is_sorted(q.level_values().begin(), q.level_values().end()));
  const std::vector<double> centroids = GridGaussian().centroids(q.thresholds());
  for (int i = 0; i < 256; ++i) EXPECT_NEAR(q.decode(i), centroids[i], 1e-3) << i;
  // High-resolution limit (Panter–Dite): D ≈ (√3·π/2)·4^−b, approached from below.
  const double panter_dite = std::sqrt(3.0) * M_PI / 2.0 / 65536.0;
  EXPECT_LT(q.distortion(), panter_dite);
  EXPECT_GT(q.distortion(), 0.98 * panter_dite);
  EXPECT_EQ(q.encode(q.thresholds()[5]), 6);  // on a threshold: up
  EXPECT_EQ(q.encode(-100.0), 0);
  EXPECT_EQ(q.encode(100.0), 255);
}

// ---- TurboQuant

TEST(TurboQuant, RotationIsOrthogonalAndIsHadamardTimesSigns) {
  const int d = 64;
  const RandomizedHadamard pi(d, head_seed(42, 3));
  const std::vector<double> h = dense_hadamard(d);
  std::vector<double> columns(std::size_t(d) * d);  // column j = Π e_j
  for (int j = 0; j < d; ++j) {
    std::vector<double> e(d, 0.0);
    e[j] = 1.0;
    pi.forward(e.data());
    for (int i = 0; i < d; ++i) {
      columns[std::size_t(j) * d + i] = e[i];
      ASSERT_NEAR(e[i], h[std::size_t(i) * d + j] * pi.signs()[j], 1e-15);  // Π = H·D
    }
    std::vector<double> back = e;
    pi.inverse(back.data());
    for (int i = 0; i < d; ++i) ASSERT_NEAR(back[i], i == j ? 1.0 : 0.0, 1e-14);
  }
  for (int a = 0; a < d; ++a) {  // ΠᵀΠ = I
    for (int b = 0; b < d; ++b) {
      double s = 0.0;
      for (int i = 0; i < d; ++i) s += columns[std::size_t(a) * d + i] * columns[std::size_t(b) * d + i];
      ASSERT_NEAR(s, a == b ? 1.0 : 0.0, 1e-13);
    }
  }
  int negative = 0;
  for (double s : pi.signs()) negative += s < 0;
  EXPECT_GT(negative, 16);
  EXPECT_LT(negative, 48);
  EXPECT_NE(RandomizedHadamard(d, head_seed(42, 4)).signs(), pi.signs());
}

TEST(TurboQuant, ReconstructIsTheFormulaWithTheCodebook) {
  const int tokens = 20, heads = 2, d = 128, bits = 3;
  const std::vector<float> rows = gaussian_rows(std::size_t(tokens) * heads * d, 8, 2.0);
  QuantizerOptions options;
  options.turboquant_bits = bits;
  options.seed = 99;
  const Reconstruction r = run(*make_kv_quantizer("turboquant", KvKind::kKey, options), rows, tokens, heads, d);
  const std::vector<double> h = dense_hadamard(d), levels = gaussian_lloyd_max_levels(bits);
  double norm_ratio = 0.0, squared_error = 0.0;
  for (int t = 0; t < tokens; ++t) {
    for (int head = 0; head < heads; ++head) {
      const std::vector<double> signs = RandomizedHadamard(d, head_seed(99, head)).signs();
      const float* x = rows.data() + (std::size_t(t) * heads + head) * d;
      double norm = 0.0;
      for (int i = 0; i < d; ++i) norm += double(x[i]) * x[i];
      norm = std::sqrt(norm);
      std::vector<double> y_hat(d);
      for (int i = 0; i < d; ++i) {  // y = H·D·x/‖x‖·√d, then the nearest level
        double y = 0.0;
        for (int j = 0; j < d; ++j) y += h[std::size_t(i) * d + j] * signs[j] * x[j];
        y_hat[i] = levels[nearest(levels, y / norm * std::sqrt(double(d)))];
      }
      double out_norm = 0.0;
      for (int j = 0; j < d; ++j) {  // x̂ = f16(‖x‖)/√d · D·H·ŷ
        double s = 0.0;
        for (int i = 0; i < d; ++i) s += signs[j] * h[std::size_t(j) * d + i] * y_hat[i];
        const double expected = f16(norm) / std::sqrt(double(d)) * s;
        const float got = r.out[(std::size_t(t) * heads + head) * d + j];
        ASSERT_NEAR(got, expected, 1e-5);
        out_norm += double(got) * got;
        squared_error += (double(got) - x[j]) * (double(got) - x[j]) / (norm * norm);
      }
      norm_ratio += out_norm / (norm * norm);
    }
  }
  // Centroids shrink: E‖ŷ‖² = d(1 − D_b); and the error per unit norm is D_b (coordinates ≈ N(0, 1)).
  const double distortion = GaussianLloydMax(bits).distortion(), rows_count = tokens * heads;
  EXPECT_NEAR(norm_ratio / rows_count, 1.0 - distortion, 0.01);
  EXPECT_NEAR(squared_error / rows_count, distortion, 0.15 * distortion);
  EXPECT_DOUBLE_EQ(r.bits / rows.size(), 3.0 + 16.0 / 128);
}

TEST(TurboQuant, ErrorFallsWithBitsAndMatchesTheDistortion) {
  const int tokens = 64, heads = 2, d = 128;
  const std::vector<float> rows = gaussian_rows(std::size_t(tokens) * heads * d, 9);
  double previous = 1.0;
  for (int bits = 1; bits <= 8; ++bits) {
    const Reconstruction r = run(TurboQuantizer(bits, 5), rows, tokens, heads, d);
    const double e = relative_error(rows, r.out);
    EXPECT_LT(e, previous) << bits;
    if (bits <= 6) {
      EXPECT_NEAR(e * e, GaussianLloydMax(bits).distortion(), 0.1 * GaussianLloydMax(bits).distortion()) << bits;
    }
    EXPECT_DOUBLE_EQ(r.bits / rows.size(), bits + 16.0 / d);
    previous = e;
  }
}

// ---- eOptShrinkQ

/// X = Σ θ_k u_k v_kᵀ + Z for one head: u_k, v_k orthonormal (Gram–Schmidt of Gaussians), θ_k = y_k·√T (y_k
/// the normalised singular values, noise σ = 1), Z iid N(0, 1).
std::vector<double> spiked(int tokens, int d, const std::vector<double>& y, std::uint64_t seed) {
  const int r = int(y.size());
  const auto orthonormal = [r](int n, std::uint64_t s) {
    std::vector<std::vector<double>> q;
    const std::vector<double> g = gaussian(std::size_t(n) * r, s);
    for (int k = 0; k < r; ++k) {
      std::vector<double> v(g.begin() + std::size_t(k) * n, g.begin() + std::size_t(k + 1) * n);
      for (const auto& p : q) {
        double dot = 0.0;
        for (int i = 0; i < n; ++i) dot += v[i] * p[i];
        for (int i = 0; i < n; ++i) v[i] -= dot * p[i];
      }
      double norm = 0.0;
      for (double x : v) norm += x * x;
      for (double& x : v) x /= std::sqrt(norm);
      q.push_back(v);
    }
    return q;
  };
  const auto u = orthonormal(tokens, seed), v = orthonormal(d, seed + 1);
  std::vector<double> x = gaussian(std::size_t(tokens) * d, seed + 2);
  for (int k = 0; k < r; ++k) {
    for (int t = 0; t < tokens; ++t) {
      for (int j = 0; j < d; ++j) x[std::size_t(t) * d + j] += y[k] * std::sqrt(double(tokens)) * u[k][t] * v[k][j];
    }
  }
  return x;
}

TEST(LowRank, MarchenkoPasturMedianAgreesWithGavishDonohoOmega) {
  for (double beta : {1.0, 0.5, 0.25, 0.125, 1.0 / 32}) {
    // ω(β) = λ*(β)/√μ_β; the paper's fit ω ≈ 0.56β³ − 0.95β² + 1.82β + 1.43 is good to about 0.01.
    const double lambda = std::sqrt(2.0 * (beta + 1.0) + 8.0 * beta / (beta + 1.0 + std::sqrt(beta * beta + 14.0 * beta + 1.0)));
    const double fit = 0.56 * beta * beta * beta - 0.95 * beta * beta + 1.82 * beta + 1.43;
    EXPECT_NEAR(lambda / std::sqrt(marchenko_pastur_median(beta)), fit, 0.01) << beta;
  }
}

TEST(LowRank, ThinSvdReconstructsAndMatchesEigen) {
  for (const auto& [m, n] : std::vector<std::pair<int, int>>{{200, 48}, {16, 40}}) {
    const std::vector<double> a = gaussian(std::size_t(m) * n, 11 + m);
    const ThinSvd svd = thin_svd(a.data(), m, n);
    const int k = std::min(m, n);
    ASSERT_EQ(int(svd.singular_values.size()), k);
    for (int i = 0; i < m; ++i) {
      for (int j = 0; j < n; ++j) {
        double s = 0.0;
        for (int c = 0; c < k; ++c) s += svd.singular_values[c] * svd.u[c][i] * svd.v[c][j];
        ASSERT_NEAR(s, a[std::size_t(i) * n + j], 1e-12);
      }
    }
#ifndef OSCAR_TESTS_RUNTIME_ONLY
    const Eigen::MatrixXd e = Eigen::Map<const Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>>(a.data(), m, n);
    const Eigen::JacobiSVD<Eigen::MatrixXd> reference(e, Eigen::ComputeThinU | Eigen::ComputeThinV);
    for (int c = 0; c < k; ++c) {
      EXPECT_NEAR(svd.singular_values[c], reference.singularValues()[c], 1e-10 * svd.singular_values[0]);
      double overlap = 0.0;  // singular vectors up to sign
      for (int j = 0; j < n; ++j) overlap += svd.v[c][j] * reference.matrixV()(j, c);
      EXPECT_NEAR(std::fabs(overlap), 1.0, 1e-8) << c;
    }
#endif
  }
}

TEST(EOptShrinkQ, RecoversTheSpikedRankAndBeatsTurboQuantAtMoreBits) {
  const int tokens = 512, d = 64, heads = 2;
  const std::vector<double> y = {40.0, 30.0, 20.0};  // far above the BBP edge 1 + √(64/512) = 1.354
  const std::vector<double> x0 = spiked(tokens, d, y, 21), x1 = spiked(tokens, d, {25.0, 12.0, 6.0}, 31);
  for (const auto* x : {&x0, &x1}) {
    const LowRankPart part = shrinkage_low_rank(x->data(), tokens, d, 0);
    EXPECT_EQ(part.rank, 3);
    EXPECT_NEAR(part.sigma, 1.0, 0.05);
  }
  // Shrunk values approach the true θ_k = y_k·√T for strong spikes.
  const ThinSvd svd = thin_svd(x0.data(), tokens, d);
  const Shrinkage shrinkage = optimal_shrinkage(svd.singular_values, tokens, d);
  for (int k = 0; k < 3; ++k) EXPECT_NEAR(shrinkage.shrunk[k] / (y[k] * std::sqrt(double(tokens))), 1.0, 0.01) << k;

  std::vector<float> rows(std::size_t(tokens) * heads * d);  // head 0: x0, head 1: x1
  for (int t = 0; t < tokens; ++t) {
    for (int j = 0; j < d; ++j) {
      rows[(std::size_t(t) * heads + 0) * d + j] = float(x0[std::size_t(t) * d + j]);
      rows[(std::size_t(t) * heads + 1) * d + j] = float(x1[std::size_t(t) * d + j]);
    }
  }
  const Reconstruction e = run(*make_kv_quantizer("eoptshrinkq", KvKind::kKey, {}), rows, tokens, heads, d);
  const double expected_bits = heads * (16.0 * 3 * (tokens + d) + tokens * (2.0 * d + 16));
  EXPECT_DOUBLE_EQ(e.bits, expected_bits);
  const double e_bits = e.bits / rows.size();                      // 3.09375
  const int tq_bits = int(std::ceil(e_bits - 16.0 / d));           // the least TurboQuant b with b + 16/d ≥ that
  const Reconstruction t = run(TurboQuantizer(tq_bits, QuantizerOptions{}.seed), rows, tokens, heads, d);
  ASSERT_GE(t.bits, e.bits);
  const double e_error = relative_error(rows, e.out), t_error = relative_error(rows, t.out);
  RecordProperty("eoptshrinkq_bits", std::to_string(e_bits));
  std::printf("eOptShrinkQ %.4f bits/element: rel. error %.4f; TurboQuant b=%d (%.4f bits): %.4f\n", e_bits, e_error,
              tq_bits, t.bits / rows.size(), t_error);
  EXPECT_LT(e_error, 0.5 * t_error);
}

TEST(EOptShrinkQ, NoiseAloneKeepsNoRankAndErrorFallsWithBits) {
  const int tokens = 256, heads = 1, d = 64;
  const std::vector<float> rows = gaussian_rows(std::size_t(tokens) * d, 41);
  double previous = 1.0;
  for (int bits = 1; bits <= 4; ++bits) {
    const Reconstruction r = run(EOptShrinkQuantizer(bits, 7, 0), rows, tokens, heads, d);
    EXPECT_DOUBLE_EQ(r.bits, tokens * (bits * d + 16.0));  // rank 0: TurboQuant's bits only
    const double error = relative_error(rows, r.out);
    EXPECT_LT(error, previous);
    previous = error;
  }
  // A rank cap limits the factors' bits.
  const std::vector<double> x = spiked(tokens, d, {30.0, 20.0, 10.0}, 51);
  const std::vector<float> spikes(x.begin(), x.end());
  EXPECT_DOUBLE_EQ(run(EOptShrinkQuantizer(2, 7, 1), spikes, tokens, 1, d).bits, 16.0 * (tokens + d) + tokens * (2.0 * d + 16));
}

// ---- 8 bits: every method that has an 8-bit form (the INT2-format methods and naive-sym do not)

TEST(KvQuantizers, EightBitsReconstructWithinOnePercent) {
  const int tokens = 64, heads = 2, d = 128;
  const std::vector<float> rows = gaussian_rows(std::size_t(tokens) * heads * d, 61, 3.0);
  const TurboQuantizer turbo(8, 3);
  const KiviQuantizer kivi_keys(KvKind::kKey, 32, 8), kivi_values(KvKind::kValue, 32, 8);
  const EOptShrinkQuantizer eopt(8, 3, 0);
  for (const auto& [name, q] : std::vector<std::pair<std::string, const KvQuantizer*>>{
           {"turboquant", &turbo}, {"kivi keys", &kivi_keys}, {"kivi values", &kivi_values}, {"eoptshrinkq", &eopt}}) {
    const double error = relative_error(rows, run(*q, rows, tokens, heads, d).out);
    std::printf("%s at 8 bits: relative error %.7f\n", name.c_str(), error);
    EXPECT_LT(error, 1e-2) << name;
  }
}

}  // namespace
}  // namespace oscar::runtime
