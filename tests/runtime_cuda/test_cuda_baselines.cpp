// Tests of the CUDA baselines (lib/runtime/cuda/baselines_cuda.h): naive-sym and TurboQuant.
//  - Emulation tests (any machine): the kernels' per-row code (baselines_row.cuh) compiled for the host and run
//    sequentially equals the CPU classes (runtime/baseline_quantizers.h) bit for bit.
//  - Host-side tests (any machine): the factory, the reported bits and the argument errors, which are all
//    decided before any device is touched.
//  - GPU tests (skipped without a device): the CUDA classes' output equals the CPU classes' bit for bit and the
//    reported bits are equal.
#include <gtest/gtest.h>

#include "require_cuda_device.h"

#include <cmath>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "runtime/baseline_quantizers.h"
#include "runtime/cuda/baselines_cuda.h"
#include "runtime/cuda/baselines_row.cuh"
#include "runtime/cuda/int2_cuda.h"
#include "runtime/kv_quantizer.h"
#include "runtime/lloyd_max.h"

namespace oscar::runtime {
namespace {

// ---- Inputs ----------------------------------------------------------------------------------------------------

/// [tokens, heads, d] Gaussian rows, with an outlier row (one element ×40), an all-zero row, a row of signed
/// zeros and tiny values (its naive-sym scale rounds to 0 in float16), a row beyond float16's range, and a row
/// of values on naive-sym's decision boundaries. tokens ≥ 6.
std::vector<float> test_rows(int tokens, int heads, int d, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(std::size_t(tokens) * heads * d);
  for (float& v : x) v = normal(rng);
  auto row = [&](int r) { return x.data() + std::size_t(r) * d; };
  const int rows = tokens * heads;
  std::uniform_int_distribution<int> pick(0, d - 1);
  row(0)[pick(rng)] *= 40.0f;                                         // outlier
  for (int e = 0; e < d; ++e) row(1)[e] = 0.0f;                       // zero row
  for (int e = 0; e < d; ++e) row(2)[e] = e % 2 ? -0.0f : 1e-9f * float(e % 3);  // tiny and signed zeros
  for (int e = 0; e < d; ++e) row(3)[e] = (e % 3 ? 1.0f : -1.0f) * 2e5f * float(e + 1);  // beyond 65504·1.5
  for (int e = 0; e < d; ++e) row(4)[e] = 0.5f * float(e % 7) - 1.5f;  // exact multiples of s/2 (s = 1)
  for (int e = 0; e < d; ++e) row(5)[e] = float(std::numeric_limits<float>::denorm_min()) * float(e % 5);
  for (int r = 6; r < rows; r += 5) row(r)[pick(rng)] *= -25.0f;      // more outliers
  return x;
}

struct Shape {
  int tokens, heads, d;
};

std::vector<Shape> test_shapes() {
  std::vector<Shape> shapes;
  for (int d : {8, 16, 64, 128}) {
    for (int heads = 1; heads <= 4; ++heads) shapes.push_back({7, heads, d});
  }
  shapes.push_back({300, 4, 128});  // more rows than one pass of small grids would take
  shapes.push_back({6, 2, 256});
  shapes.push_back({6, 1, 1});
  shapes.push_back({6, 3, 2});
  return shapes;
}

std::string describe(const Shape& s) {
  return "tokens=" + std::to_string(s.tokens) + " heads=" + std::to_string(s.heads) + " d=" + std::to_string(s.d);
}

/// Bit-for-bit equality of two float arrays, naming the first difference.
::testing::AssertionResult same_bits(const std::vector<float>& expected, const std::vector<float>& actual, int d) {
  if (expected.size() != actual.size()) return ::testing::AssertionFailure() << "sizes differ";
  for (std::size_t i = 0; i < expected.size(); ++i) {
    std::uint32_t a, b;
    std::memcpy(&a, &expected[i], sizeof a);
    std::memcpy(&b, &actual[i], sizeof b);
    if (a != b) {
      char bits[40];
      std::snprintf(bits, sizeof bits, "0x%08x vs 0x%08x", unsigned(a), unsigned(b));
      return ::testing::AssertionFailure() << "row " << i / std::size_t(d) << ", element " << i % std::size_t(d)
                                           << ": CPU " << expected[i] << ", CUDA " << actual[i] << " (" << bits << ")";
    }
  }
  return ::testing::AssertionSuccess();
}

// ---- Host emulation of the kernels -----------------------------------------------------------------------------

struct NoBarrier {
  void operator()() const {}
};

double emulate_naive_sym(const std::vector<float>& x, int d, int group_size, std::vector<float>& out) {
  const int g = group_size == 0 ? d : group_size;
  out.assign(x.size(), -1.0f);
  const std::size_t groups = x.size() / std::size_t(g);
  for (std::size_t i = 0; i < groups; ++i) gpu::detail::naive_sym_group_sequential(x.data() + i * g, g, out.data() + i * g);
  return double(groups) * (2.0 * g + 16.0);
}

double emulate_turboquant(const std::vector<float>& x, int heads, int d, int bits, std::uint64_t seed,
                          std::vector<float>& out) {
  const GaussianLloydMax codebook(bits);
  std::vector<std::vector<double>> signs;
  for (int h = 0; h < heads; ++h) signs.push_back(RandomizedHadamard(d, head_seed(seed, h)).signs());
  gpu::detail::TurboParams p;
  p.d = d;
  p.root_d = std::sqrt(double(d));
  p.inv_root_d = 1.0 / std::sqrt(double(d));
  p.thresholds = codebook.thresholds().data();
  p.levels = codebook.level_values().data();
  p.threshold_count = int(codebook.thresholds().size());
  out.assign(x.size(), -1.0f);
  std::vector<double> y(d);
  gpu::detail::TurboScratch scratch{};
  const std::size_t rows = x.size() / std::size_t(d);
  for (std::size_t r = 0; r < rows; ++r) {
    gpu::detail::turboquant_row_block(0, 1, p, x.data() + r * d, signs[r % std::size_t(heads)].data(), y.data(),
                                      scratch, out.data() + r * d, NoBarrier{});
  }
  return double(rows) * (double(bits) * d + 16.0);
}

std::vector<int> group_sizes(int d) {
  std::vector<int> sizes{0};
  for (int g : {1, 4, 32}) {
    if (g < d && d % g == 0) sizes.push_back(g);
  }
  return sizes;
}

TEST(CudaBaselinesEmulation, NaiveSymEqualsCpuBitForBit) {
  for (const Shape& s : test_shapes()) {
    const std::vector<float> x = test_rows(s.tokens, s.heads, s.d, 11u + std::uint32_t(s.d * 7 + s.heads));
    for (int g : group_sizes(s.d)) {
      SCOPED_TRACE(describe(s) + " G=" + std::to_string(g));
      std::vector<float> expected(x.size()), actual;
      const double cpu_bits = NaiveSymmetricQuantizer(g).reconstruct(x.data(), s.tokens, s.heads, s.d, expected.data());
      const double emulated_bits = emulate_naive_sym(x, s.d, g, actual);
      EXPECT_EQ(cpu_bits, emulated_bits);
      EXPECT_TRUE(same_bits(expected, actual, s.d));
    }
  }
}

TEST(CudaBaselinesEmulation, TurboQuantEqualsCpuBitForBit) {
  for (const Shape& s : test_shapes()) {
    const std::vector<float> x = test_rows(s.tokens, s.heads, s.d, 23u + std::uint32_t(s.d * 5 + s.heads));
    for (int bits : {1, 2, 3, 4, 8}) {
      for (std::uint64_t seed : {QuantizerOptions{}.seed, std::uint64_t(12345)}) {
        SCOPED_TRACE(describe(s) + " bits=" + std::to_string(bits) + " seed=" + std::to_string(seed));
        std::vector<float> expected(x.size()), actual;
        const double cpu_bits = TurboQuantizer(bits, seed).reconstruct(x.data(), s.tokens, s.heads, s.d, expected.data());
        const double emulated_bits = emulate_turboquant(x, s.heads, s.d, bits, seed, actual);
        EXPECT_EQ(cpu_bits, emulated_bits);
        EXPECT_TRUE(same_bits(expected, actual, s.d));
      }
    }
  }
}

TEST(CudaBaselinesEmulation, LloydMaxRoundIsUpperBound) {
  for (int bits = 1; bits <= kMaxLloydMaxBits; ++bits) {
    const GaussianLloydMax codebook(bits);
    const std::vector<double>& t = codebook.thresholds();
    std::vector<double> probes{-1e300, 1e300, 0.0, -0.0, std::numeric_limits<double>::quiet_NaN()};
    for (double v : t) probes.insert(probes.end(), {v, std::nextafter(v, -1e9), std::nextafter(v, 1e9)});
    for (double y : probes) {
      EXPECT_EQ(gpu::detail::lloyd_max_round(y, t.data(), codebook.level_values().data(), int(t.size())),
                codebook.decode(codebook.encode(y)))
          << "bits " << bits << ", y " << y;
    }
  }
}

// ---- Host-side behaviour (no device needed) --------------------------------------------------------------------

TEST(CudaBaselines, FactoryCoversNaiveSymAndTurboQuant) {
  QuantizerOptions options;
  for (KvKind kind : {KvKind::kKey, KvKind::kValue}) {
    EXPECT_NE(dynamic_cast<gpu::CudaNaiveSymmetricQuantizer*>(gpu::make_cuda_kv_quantizer("naive-sym", kind, options).get()),
              nullptr);
    EXPECT_NE(dynamic_cast<gpu::CudaTurboQuantizer*>(gpu::make_cuda_kv_quantizer("turboquant", kind, options).get()),
              nullptr);
    for (const std::string& name : kv_quantizer_names()) {
      const bool has_cuda = name == "naive-sym" || name == "turboquant";
      EXPECT_EQ(gpu::make_cuda_kv_quantizer(name, kind, options) != nullptr, has_cuda) << name;
    }
  }
  EXPECT_EQ(gpu::cuda_kv_quantizer_names(), (std::vector<std::string>{"naive-sym", "turboquant"}));
  EXPECT_THROW(gpu::make_cuda_kv_quantizer("no-such-method", KvKind::kKey, options), std::invalid_argument);
  QuantizerOptions bad = options;
  bad.group_size = -1;
  EXPECT_THROW(gpu::make_cuda_kv_quantizer("naive-sym", KvKind::kKey, bad), std::invalid_argument);
  bad = options;
  bad.turboquant_bits = 9;
  EXPECT_THROW(gpu::make_cuda_kv_quantizer("turboquant", KvKind::kKey, bad), std::invalid_argument);
  bad.turboquant_bits = 0;
  EXPECT_THROW(gpu::make_cuda_kv_quantizer("turboquant", KvKind::kKey, bad), std::invalid_argument);
}

/// The exception (type and message) `f` throws, or "" when it does not throw.
template <typename F>
std::string thrown_message(F f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return std::string("invalid_argument: ") + e.what();
  } catch (const std::exception& e) {
    return std::string("other: ") + e.what();
  }
  return "";
}

TEST(CudaBaselines, ArgumentErrorsMatchTheCpuClassesWithoutADevice) {
  std::vector<float> x(2 * 3 * 12, 0.5f), out(x.size());
  const auto expect_same = [&](const KvQuantizer& cpu, const KvQuantizer& cuda, const float* rows, int tokens,
                               int heads, int d) {
    const std::string expected = thrown_message([&] { cpu.reconstruct(rows, tokens, heads, d, out.data()); });
    ASSERT_FALSE(expected.empty());
    EXPECT_EQ(thrown_message([&] { cuda.reconstruct(rows, tokens, heads, d, out.data()); }), expected);
  };
  const NaiveSymmetricQuantizer naive_cpu(5);
  const gpu::CudaNaiveSymmetricQuantizer naive_cuda(5);
  const TurboQuantizer turbo_cpu(3, 7);
  const gpu::CudaTurboQuantizer turbo_cuda(3, 7);
  expect_same(naive_cpu, naive_cuda, x.data(), 2, 3, 12);    // G = 5 does not divide 12
  expect_same(turbo_cpu, turbo_cuda, x.data(), 2, 3, 12);    // 12 is not a power of two
  expect_same(turbo_cpu, turbo_cuda, x.data(), 0, 3, 12);    // … even without rows
  expect_same(naive_cpu, naive_cuda, x.data(), 2, 0, 8);     // heads < 1
  expect_same(turbo_cpu, turbo_cuda, x.data(), -1, 1, 8);    // tokens < 0
  x[17] = std::numeric_limits<float>::quiet_NaN();
  const NaiveSymmetricQuantizer naive_cpu_d(0);
  const gpu::CudaNaiveSymmetricQuantizer naive_cuda_d(0);
  expect_same(naive_cpu_d, naive_cuda_d, x.data(), 2, 3, 8);
  expect_same(turbo_cpu, turbo_cuda, x.data(), 2, 3, 8);
  x[17] = -std::numeric_limits<float>::infinity();
  expect_same(turbo_cpu, turbo_cuda, x.data(), 2, 3, 8);
  // d beyond the kernel's shared-memory row: the CUDA version's own error.
  const std::vector<float> wide(8192, 1.0f);
  std::vector<float> wide_out(wide.size());
  EXPECT_THROW(turbo_cuda.reconstruct(wide.data(), 1, 1, 8192, wide_out.data()), std::invalid_argument);
}

TEST(CudaBaselines, NoRowsNeedsNoDeviceAndReportsNoBits) {
  EXPECT_EQ(gpu::CudaNaiveSymmetricQuantizer(0).reconstruct(nullptr, 0, 4, 128, nullptr), 0.0);
  EXPECT_EQ(gpu::CudaTurboQuantizer(3, 1).reconstruct(nullptr, 0, 4, 128, nullptr), 0.0);
  EXPECT_EQ(gpu::CudaNaiveSymmetricQuantizer(0).reconstruct(nullptr, 0, 4, 128, nullptr),
            NaiveSymmetricQuantizer(0).reconstruct(nullptr, 0, 4, 128, nullptr));
}

// ---- GPU ---------------------------------------------------------------------------------------------------------

TEST(CudaBaselines, NaiveSymEqualsCpuBitForBit) {
  REQUIRE_CUDA_DEVICE();
  for (const Shape& s : test_shapes()) {
    const std::vector<float> x = test_rows(s.tokens, s.heads, s.d, 101u + std::uint32_t(s.d * 3 + s.heads));
    for (int g : group_sizes(s.d)) {
      SCOPED_TRACE(describe(s) + " G=" + std::to_string(g));
      std::vector<float> expected(x.size()), actual(x.size(), -1.0f);
      const double cpu_bits = NaiveSymmetricQuantizer(g).reconstruct(x.data(), s.tokens, s.heads, s.d, expected.data());
      const double cuda_bits =
          gpu::CudaNaiveSymmetricQuantizer(g).reconstruct(x.data(), s.tokens, s.heads, s.d, actual.data());
      EXPECT_EQ(cpu_bits, cuda_bits);
      EXPECT_TRUE(same_bits(expected, actual, s.d));
    }
  }
}

TEST(CudaBaselines, TurboQuantEqualsCpuBitForBit) {
  REQUIRE_CUDA_DEVICE();
  for (const Shape& s : test_shapes()) {
    const std::vector<float> x = test_rows(s.tokens, s.heads, s.d, 202u + std::uint32_t(s.d * 3 + s.heads));
    for (int bits : {1, 2, 3, 4, 8}) {
      for (std::uint64_t seed : {QuantizerOptions{}.seed, std::uint64_t(987654321)}) {
        SCOPED_TRACE(describe(s) + " bits=" + std::to_string(bits) + " seed=" + std::to_string(seed));
        std::vector<float> expected(x.size()), actual(x.size(), -1.0f);
        const double cpu_bits = TurboQuantizer(bits, seed).reconstruct(x.data(), s.tokens, s.heads, s.d, expected.data());
        const double cuda_bits =
            gpu::CudaTurboQuantizer(bits, seed).reconstruct(x.data(), s.tokens, s.heads, s.d, actual.data());
        EXPECT_EQ(cpu_bits, cuda_bits);
        EXPECT_TRUE(same_bits(expected, actual, s.d));
      }
    }
  }
}

TEST(CudaBaselines, FactoryQuantizersEqualTheCpuFactory) {
  REQUIRE_CUDA_DEVICE();
  const int tokens = 9, heads = 4, d = 64;
  const std::vector<float> x = test_rows(tokens, heads, d, 303u);
  QuantizerOptions options;
  options.group_size = 32;
  options.turboquant_bits = 2;
  for (const std::string& name : gpu::cuda_kv_quantizer_names()) {
    for (KvKind kind : {KvKind::kKey, KvKind::kValue}) {
      SCOPED_TRACE(name);
      const auto cpu = make_kv_quantizer(name, kind, options);
      const auto cuda = gpu::make_cuda_kv_quantizer(name, kind, options);
      ASSERT_NE(cuda, nullptr);
      EXPECT_EQ(cuda->granule(), cpu->granule());
      EXPECT_EQ(cuda->whole_sequence(), cpu->whole_sequence());
      std::vector<float> expected(x.size()), actual(x.size(), -1.0f);
      EXPECT_EQ(cpu->reconstruct(x.data(), tokens, heads, d, expected.data()),
                cuda->reconstruct(x.data(), tokens, heads, d, actual.data()));
      EXPECT_TRUE(same_bits(expected, actual, d));
    }
  }
}

}  // namespace
}  // namespace oscar::runtime
