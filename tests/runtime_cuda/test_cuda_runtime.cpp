// Tests of the CUDA runtime (lib/runtime/cuda).
//  - Emulation tests (any machine): the quantize kernel's per-row code (quantize_row.cuh) compiled for the
//    host and run sequentially equals the CPU reference bit for bit, for every format option.
//  - GPU tests (skipped without a device): the kernels' codes, scales and zeros equal the CPU reference bit for
//    bit; the GPU mixed cache stores exactly the reference's bytes; decode attention is within 1e-3
//    (relative to the largest output magnitude) of dense attention computed here in double precision.
#include <gtest/gtest.h>

#include "require_cuda_device.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "runtime/cuda/int2_cuda.h"
#include "runtime/cuda/quantize_row.cuh"
#include "runtime/int2_format.h"
#include "runtime/int2_quantize.h"

namespace oscar::runtime {
namespace {

using gpu::CudaCacheConfig;
using gpu::CudaMixedCache;
using gpu::DeviceBuffer;
using gpu::DeviceInt2Rows;

// ---- Inputs ----------------------------------------------------------------------------------------------------

std::vector<float> random_rows(std::int64_t count, int d, std::uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, scale);
  std::vector<float> x(std::size_t(count) * d);
  for (float& v : x) v = normal(rng);
  // Heavy-tailed outliers in some rows, as real keys have.
  std::uniform_int_distribution<int> pick(0, d - 1);
  for (std::int64_t r = 0; r < count; r += 3) x[std::size_t(r) * d + pick(rng)] *= 40.0f;
  return x;
}

/// Rows that stress ties, signed zeros, constant groups, tiny and huge ranges and exact .5 boundaries.
std::vector<float> adversarial_rows(int d) {
  std::vector<std::vector<float>> rows;
  rows.push_back(std::vector<float>(d, 0.0f));
  rows.push_back(std::vector<float>(d, -0.0f));
  rows.push_back(std::vector<float>(d, 3.25f));
  rows.push_back(std::vector<float>(d, -1e30f));
  std::vector<float> r(d);
  for (int e = 0; e < d; ++e) r[e] = (e % 2 ? -0.0f : 0.0f) + float(e % 4);
  rows.push_back(r);
  for (int e = 0; e < d; ++e) r[e] = float(e % 7) * 0.5f - 1.5f;  // exact half steps
  rows.push_back(r);
  for (int e = 0; e < d; ++e) r[e] = (e % 2 ? 3e38f : -3e38f);  // range overflows float32
  rows.push_back(r);
  for (int e = 0; e < d; ++e) r[e] = 1e-30f * float(e);
  rows.push_back(r);
  for (int e = 0; e < d; ++e) r[e] = 1.0f + 1e-7f * float(e % 3);  // same sign, tiny spread
  rows.push_back(r);
  for (int e = 0; e < d; ++e) r[e] = e == d / 2 ? 1e6f : 1e-3f * float(e % 5);
  rows.push_back(r);
  for (int e = 0; e < d; ++e) r[e] = float(std::numeric_limits<float>::denorm_min()) * float(e % 9);
  rows.push_back(r);
  std::vector<float> flat;
  for (const auto& row : rows) flat.insert(flat.end(), row.begin(), row.end());
  return flat;
}

std::vector<Int2Config> all_configs(int d) {
  std::vector<Int2Config> configs;
  for (int g : {d, 64, 32}) {
    if (g > d || d % g != 0) continue;
    for (double clip : {0.0, 0.96, 0.92}) {
      for (ScaleType st : {ScaleType::kFloat32, ScaleType::kFloat16}) {
        for (Encoding enc : {Encoding::kMinMax, Encoding::kLloydMax}) configs.push_back({d, g, clip, st, enc});
      }
    }
  }
  return configs;
}

std::string describe(const Int2Config& c) {
  return "d=" + std::to_string(c.head_dim) + " G=" + std::to_string(c.group_size) + " clip=" +
         std::to_string(c.clip_ratio) + (c.scale_type == ScaleType::kFloat16 ? " fp16" : " fp32") +
         (c.encoding == Encoding::kLloydMax ? " lloyd-max" : " min-max");
}

/// Rotated rows in the documented order (Rotation::apply's): y[j] = Σ_i x[i]·R[i][j], i ascending, float32.
std::vector<float> rotate_reference(const std::vector<float>& x, int d, int heads, const std::vector<float>& r,
                                    int matrices) {
  std::vector<float> y(x.size());
  const std::size_t rows = x.size() / std::size_t(d);
  for (std::size_t row = 0; row < rows; ++row) {
    const int m = int(row % std::size_t(heads)) / (heads / matrices);
    const float* rm = r.data() + std::size_t(m) * d * d;
    for (int j = 0; j < d; ++j) {
      float acc = 0.0f;
      for (int i = 0; i < d; ++i) acc += x[row * d + i] * rm[std::size_t(i) * d + j];
      y[row * d + j] = acc;
    }
  }
  return y;
}

/// An orthogonal matrix per head: Householder products of random vectors (float32 result).
std::vector<float> random_rotations(int d, int matrices, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<float> out;
  for (int m = 0; m < matrices; ++m) {
    std::vector<double> q(std::size_t(d) * d, 0.0);
    for (int i = 0; i < d; ++i) q[std::size_t(i) * d + i] = 1.0;
    for (int k = 0; k < 4; ++k) {
      std::vector<double> v(d);
      double norm = 0.0;
      for (double& x : v) {
        x = normal(rng);
        norm += x * x;
      }
      norm = std::sqrt(norm);
      for (double& x : v) x /= norm;
      // q <- q (I − 2 v vᵀ)
      for (int i = 0; i < d; ++i) {
        double dot = 0.0;
        for (int j = 0; j < d; ++j) dot += q[std::size_t(i) * d + j] * v[j];
        for (int j = 0; j < d; ++j) q[std::size_t(i) * d + j] -= 2.0 * dot * v[j];
      }
    }
    for (double x : q) out.push_back(float(x));
  }
  return out;
}

struct HostRows {
  std::vector<std::uint8_t> codes;
  std::vector<std::uint8_t> scales, zeros;  // raw bytes (float32 or float16)
  HostRows(std::int64_t count, const Int2Config& c)
      : codes(std::size_t(count) * c.packed_bytes()),
        scales(std::size_t(count) * c.groups() * c.scale_bytes()),
        zeros(scales.size()) {}
  Int2Rows rows() { return {codes.data(), scales.data(), zeros.data()}; }
  ConstInt2Rows const_rows() const { return {codes.data(), scales.data(), zeros.data()}; }
};

::testing::AssertionResult same_bytes(const HostRows& a, const HostRows& b, const Int2Config& c) {
  auto first_diff = [](const std::vector<std::uint8_t>& x, const std::vector<std::uint8_t>& y) -> long long {
    for (std::size_t i = 0; i < x.size(); ++i) {
      if (x[i] != y[i]) return static_cast<long long>(i);
    }
    return -1;
  };
  long long i;
  if ((i = first_diff(a.codes, b.codes)) >= 0) {
    return ::testing::AssertionFailure() << describe(c) << ": codes differ at byte " << i << " (row "
                                         << i / c.packed_bytes() << ")";
  }
  if ((i = first_diff(a.scales, b.scales)) >= 0) {
    return ::testing::AssertionFailure() << describe(c) << ": scales differ at byte " << i;
  }
  if ((i = first_diff(a.zeros, b.zeros)) >= 0) {
    return ::testing::AssertionFailure() << describe(c) << ": zeros differ at byte " << i;
  }
  return ::testing::AssertionSuccess();
}

// ---- Host emulation of the quantize kernel -------------------------------------------------------------------

struct NoBarrier {
  void operator()() const {}
};

gpu::detail::RowFormat emulated_format(const Int2Config& c) {
  gpu::detail::RowFormat f{};
  f.head_dim = c.head_dim;
  f.group_size = c.group_size;
  f.groups = c.groups();
  f.clip_index = clip_index(c.clip_ratio, c.head_dim);
  f.sort_size = 1;
  while (f.sort_size < c.head_dim) f.sort_size <<= 1;
  f.float16_scales = c.scale_type == ScaleType::kFloat16;
  f.lloyd_max = c.encoding == Encoding::kLloydMax;
  return f;
}

/// The kernel's row code, sequentially (one "thread", no-op barriers). Returns the error slots.
std::vector<unsigned long long> emulate(const std::vector<float>& rows, const Int2Config& c, HostRows& out,
                                        const float* rotation = nullptr, bool round_to_bf16 = false) {
  const gpu::detail::RowFormat f = emulated_format(c);
  std::vector<unsigned long long> errors(2, gpu::detail::kNoError);
  auto scratch = std::make_unique<gpu::detail::RowScratch>();
  const std::int64_t count = std::int64_t(rows.size()) / c.head_dim;
  for (std::int64_t r = 0; r < count; ++r) {
    std::copy(rows.begin() + r * c.head_dim, rows.begin() + (r + 1) * c.head_dim, scratch->staged);
    gpu::detail::RowOutput o{out.codes.data() + r * c.packed_bytes(),
                             out.scales.data() + std::size_t(r) * c.groups() * c.scale_bytes(),
                             out.zeros.data() + std::size_t(r) * c.groups() * c.scale_bytes()};
    gpu::detail::quantize_row(0, 1, f, rotation, round_to_bf16, *scratch, o, static_cast<unsigned long long>(r),
                              errors.data(), NoBarrier{});
  }
  return errors;
}

/// Skips rows the reference rejects (Lloyd-Max overflow on adversarial rows) by quantising row by row.
bool reference_row_by_row(const std::vector<float>& rows, const Int2Config& c, HostRows& out,
                          std::vector<bool>& rejected) {
  const std::int64_t count = std::int64_t(rows.size()) / c.head_dim;
  rejected.assign(std::size_t(count), false);
  bool any = false;
  for (std::int64_t r = 0; r < count; ++r) {
    Int2Rows o{out.codes.data() + r * c.packed_bytes(), out.scales.data() + std::size_t(r) * c.groups() * c.scale_bytes(),
               out.zeros.data() + std::size_t(r) * c.groups() * c.scale_bytes()};
    try {
      quantize_rows_reference(rows.data() + r * c.head_dim, 1, c, o);
    } catch (const std::invalid_argument&) {
      rejected[std::size_t(r)] = true;
      any = true;
    }
  }
  return any;
}

TEST(CudaQuantizeEmulation, EqualsReferenceBitForBit) {
  for (int d : {32, 64, 96, 128, 256}) {
    std::vector<float> rows = random_rows(40, d, 11u + unsigned(d));
    const std::vector<float> hard = adversarial_rows(d);
    rows.insert(rows.end(), hard.begin(), hard.end());
    const std::int64_t count = std::int64_t(rows.size()) / d;
    for (const Int2Config& c : all_configs(d)) {
      HostRows expected(count, c), got(count, c);
      std::vector<bool> rejected;
      reference_row_by_row(rows, c, expected, rejected);
      const std::vector<unsigned long long> errors = emulate(rows, c, got);
      EXPECT_EQ(errors[0], gpu::detail::kNoError) << describe(c);
      // Rows the reference rejects (Lloyd-Max overflow) are flagged by the kernel; blank them on both sides.
      for (std::int64_t r = 0; r < count; ++r) {
        if (!rejected[std::size_t(r)]) continue;
        EXPECT_LE(errors[1] >> 4, static_cast<unsigned long long>(r)) << describe(c);
        for (HostRows* h : {&expected, &got}) {
          std::fill_n(h->codes.begin() + r * c.packed_bytes(), c.packed_bytes(), 0);
          std::fill_n(h->scales.begin() + std::size_t(r) * c.groups() * c.scale_bytes(), c.groups() * c.scale_bytes(), 0);
          std::fill_n(h->zeros.begin() + std::size_t(r) * c.groups() * c.scale_bytes(), c.groups() * c.scale_bytes(), 0);
        }
      }
      EXPECT_TRUE(same_bytes(expected, got, c));
    }
  }
}

TEST(CudaQuantizeEmulation, RotationAndBf16RoundingEqualTheDocumentedOrder) {
  const int d = 128;
  const std::vector<float> rows = random_rows(24, d, 5u);
  const std::vector<float> r = random_rotations(d, 1, 9u);
  std::vector<float> rotated = rotate_reference(rows, d, 1, r, 1);
  for (float& v : rotated) v = bfloat16_to_float(float_to_bfloat16(v));
  const Int2Config c{d, d, 0.96, ScaleType::kFloat16, Encoding::kMinMax};
  HostRows expected(24, c), got(24, c);
  quantize_rows_reference(rotated.data(), 24, c, expected.rows());
  emulate(rows, c, got, r.data(), true);
  EXPECT_TRUE(same_bytes(expected, got, c));
}

TEST(CudaQuantizeEmulation, FlagsTheFirstNonFiniteValue) {
  const int d = 64;
  std::vector<float> rows = random_rows(6, d, 3u);
  rows[std::size_t(4) * d + 9] = -std::numeric_limits<float>::infinity();
  rows[std::size_t(2) * d + 17] = std::numeric_limits<float>::quiet_NaN();
  rows[std::size_t(2) * d + 30] = std::numeric_limits<float>::infinity();
  const Int2Config c{d, d, 0.9, ScaleType::kFloat32, Encoding::kMinMax};
  HostRows got(6, c);
  const std::vector<unsigned long long> errors = emulate(rows, c, got);
  EXPECT_EQ(errors[0] >> 10, 2u);
  EXPECT_EQ((errors[0] >> 2) & 0xffu, 17u);
  EXPECT_EQ(errors[0] & 3u, 0u);  // NaN
}

TEST(CudaRuntime, DeviceQueryNeverThrows) {
  bool available = false;
  EXPECT_NO_THROW(available = gpu::cuda_device_available());
  if (!available) {
    EXPECT_TRUE(gpu::cuda_device_description().empty());
    std::printf("no CUDA device: GPU tests skipped\n");
  } else {
    std::printf("CUDA device: %s\n", gpu::cuda_device_description().c_str());
  }
}

TEST(CudaRuntime, ConfigValidation) {
  CudaCacheConfig c = CudaCacheConfig::make(8, 128, 1024);
  EXPECT_NO_THROW(c.validate());
  c.sink_tokens = 12;
  EXPECT_THROW(c.validate(), std::invalid_argument);
  c = CudaCacheConfig::make(8, 96, 1024);
  EXPECT_THROW(c.validate(), std::invalid_argument);
  c = CudaCacheConfig::make(8, 128, 1024);
  c.key_int2.group_size = 48;
  EXPECT_THROW(c.validate(), std::invalid_argument);
  c = CudaCacheConfig::make(8, 128, 1024);
  c.decode_waves = 0;
  EXPECT_THROW(c.validate(), std::invalid_argument);
}

// ---- GPU: quantisation -----------------------------------------------------------------------------------------

HostRows gpu_quantize(const std::vector<float>& rows, const Int2Config& c, const std::vector<float>* rotation = nullptr,
                      int heads = 1, int matrices = 1) {
  const std::int64_t count = std::int64_t(rows.size()) / c.head_dim;
  HostRows out(count, c);
  DeviceBuffer x(rows.size() * sizeof(float)), codes(out.codes.size()), scales(out.scales.size()), zeros(out.zeros.size());
  x.upload(rows.data(), rows.size() * sizeof(float));
  DeviceBuffer r;
  if (rotation != nullptr) {
    r = DeviceBuffer(rotation->size() * sizeof(float));
    r.upload(rotation->data(), rotation->size() * sizeof(float));
  }
  gpu::quantize_rows(x.as<float>(), count, c, DeviceInt2Rows{codes.as<std::uint8_t>(), scales.data(), zeros.data()},
                     rotation != nullptr ? r.as<float>() : nullptr, heads, matrices);
  codes.download(out.codes.data(), out.codes.size());
  scales.download(out.scales.data(), out.scales.size());
  zeros.download(out.zeros.data(), out.zeros.size());
  return out;
}

TEST(CudaQuantize, EqualsReferenceBitForBit) {
  REQUIRE_CUDA_DEVICE();
  for (int d : {64, 96, 128, 256}) {
    std::vector<float> rows = random_rows(3000, d, 21u + unsigned(d));
    const std::vector<float> hard = adversarial_rows(d);
    rows.insert(rows.end(), hard.begin(), hard.end());
    const std::int64_t count = std::int64_t(rows.size()) / d;
    for (const Int2Config& c : all_configs(d)) {
      HostRows expected(count, c);
      std::vector<bool> rejected;
      if (reference_row_by_row(rows, c, expected, rejected)) {
        // Lloyd-Max overflow on an adversarial row: the GPU reports it as the reference does.
        EXPECT_THROW(gpu_quantize(rows, c), std::invalid_argument) << describe(c);
        std::vector<float> kept;
        for (std::int64_t r = 0; r < count; ++r) {
          if (!rejected[std::size_t(r)]) kept.insert(kept.end(), rows.begin() + r * d, rows.begin() + (r + 1) * d);
        }
        HostRows expected_kept(std::int64_t(kept.size()) / d, c);
        quantize_rows_reference(kept.data(), std::int64_t(kept.size()) / d, c, expected_kept.rows());
        EXPECT_TRUE(same_bytes(expected_kept, gpu_quantize(kept, c), c));
      } else {
        EXPECT_TRUE(same_bytes(expected, gpu_quantize(rows, c), c));
      }
    }
  }
}

TEST(CudaQuantize, FusedRotationEqualsRotateThenReference) {
  REQUIRE_CUDA_DEVICE();
  const int d = 128, heads = 4;
  const std::vector<float> rows = random_rows(512 * heads, d, 77u);
  for (int matrices : {1, heads}) {
    const std::vector<float> r = random_rotations(d, matrices, 13u);
    const std::vector<float> rotated = rotate_reference(rows, d, heads, r, matrices);
    for (const Int2Config& c : {Int2Config{d, d, 0.96, ScaleType::kFloat32, Encoding::kMinMax},
                                Int2Config{d, 32, 0.92, ScaleType::kFloat16, Encoding::kMinMax},
                                Int2Config{d, 64, 0.0, ScaleType::kFloat32, Encoding::kLloydMax}}) {
      HostRows expected(std::int64_t(rows.size()) / d, c);
      quantize_rows_reference(rotated.data(), std::int64_t(rows.size()) / d, c, expected.rows());
      EXPECT_TRUE(same_bytes(expected, gpu_quantize(rows, c, &r, heads, matrices), c)) << "matrices " << matrices;
    }
  }
}

TEST(CudaQuantize, RotateRowsMatchesTheDocumentedOrder) {
  REQUIRE_CUDA_DEVICE();
  const int d = 128, heads = 8, matrices = 8;
  const std::vector<float> rows = random_rows(16 * heads, d, 4u);
  const std::vector<float> r = random_rotations(d, matrices, 6u);
  DeviceBuffer x(rows.size() * 4), y(rows.size() * 4), m(r.size() * 4);
  x.upload(rows.data(), rows.size() * 4);
  m.upload(r.data(), r.size() * 4);
  gpu::rotate_rows(x.as<float>(), std::int64_t(rows.size()) / d, d, m.as<float>(), heads, matrices, false, y.as<float>());
  std::vector<float> got(rows.size());
  y.download(got.data(), got.size() * 4);
  const std::vector<float> expected = rotate_reference(rows, d, heads, r, matrices);
  EXPECT_EQ(0, std::memcmp(got.data(), expected.data(), got.size() * 4));
}

TEST(CudaQuantize, RejectsNonFiniteWithTheReferenceMessage) {
  REQUIRE_CUDA_DEVICE();
  const int d = 128;
  std::vector<float> rows = random_rows(300, d, 8u);
  rows[std::size_t(250) * d + 3] = std::numeric_limits<float>::infinity();
  rows[std::size_t(117) * d + 40] = std::numeric_limits<float>::quiet_NaN();
  const Int2Config c{d, d, 0.96, ScaleType::kFloat32, Encoding::kMinMax};
  std::string cpu_message, gpu_message;
  HostRows expected(300, c);
  try {
    quantize_rows_reference(rows.data(), 300, c, expected.rows());
  } catch (const std::invalid_argument& e) {
    cpu_message = e.what();
  }
  try {
    gpu_quantize(rows, c);
  } catch (const std::invalid_argument& e) {
    gpu_message = e.what();
  }
  EXPECT_FALSE(cpu_message.empty());
  EXPECT_EQ(cpu_message, gpu_message);
}

// ---- GPU: the mixed cache ---------------------------------------------------------------------------------------

/// What the cache must hold, computed on the host from the spec: every token's rotated row rounded to bf16;
/// tokens [S0, S0 + n2) also quantised from that bf16 row with the reference.
struct ExpectedCache {
  std::vector<float> k_fp, v_fp;  // [tokens, Hkv, d] bf16-rounded rotated rows
};

ExpectedCache expected_rows(const std::vector<float>& k, const std::vector<float>& v, int d, int hkv,
                            const std::vector<float>* rk, const std::vector<float>* rv, int matrices) {
  ExpectedCache e;
  e.k_fp = rk ? rotate_reference(k, d, hkv, *rk, matrices) : k;
  e.v_fp = rv ? rotate_reference(v, d, hkv, *rv, matrices) : v;
  for (float& x : e.k_fp) x = bfloat16_to_float(float_to_bfloat16(x));
  for (float& x : e.v_fp) x = bfloat16_to_float(float_to_bfloat16(x));
  return e;
}

/// Dense attention over the cache content in double: rows are [full precision ‖ dequantised INT2] in
/// sequence order; q is rotated by R_K here and the output multiplied by R_Vᵀ.
std::vector<double> dense_attention(const std::vector<float>& q, int hq, const std::vector<float>& keys,
                                    const std::vector<float>& values, std::int64_t tokens, int hkv, int d,
                                    const std::vector<float>* rk, const std::vector<float>* rv, int matrices) {
  const int gq = hq / hkv;
  std::vector<double> out(std::size_t(hq) * d);
  const double scale = 1.0 / std::sqrt(double(d));
  for (int h = 0; h < hq; ++h) {
    const int kvh = h / gq;
    const int m = matrices == 1 ? 0 : kvh;
    std::vector<double> qr(d, 0.0), o(d, 0.0);
    for (int j = 0; j < d; ++j) {
      if (!rk) {
        qr[j] = q[std::size_t(h) * d + j];
        continue;
      }
      for (int i = 0; i < d; ++i) qr[j] += double(q[std::size_t(h) * d + i]) * (*rk)[(std::size_t(m) * d + i) * d + j];
    }
    std::vector<double> s(static_cast<std::size_t>(tokens));
    double mx = -1e300;
    for (std::int64_t t = 0; t < tokens; ++t) {
      double dot = 0.0;
      for (int j = 0; j < d; ++j) dot += qr[j] * keys[(std::size_t(t) * hkv + kvh) * d + j];
      s[std::size_t(t)] = dot * scale;
      mx = std::max(mx, s[std::size_t(t)]);
    }
    double sum = 0.0;
    for (std::int64_t t = 0; t < tokens; ++t) sum += (s[std::size_t(t)] = std::exp(s[std::size_t(t)] - mx));
    for (std::int64_t t = 0; t < tokens; ++t) {
      for (int j = 0; j < d; ++j) o[j] += s[std::size_t(t)] / sum * values[(std::size_t(t) * hkv + kvh) * d + j];
    }
    for (int j = 0; j < d; ++j) {
      double y = 0.0;
      if (!rv) {
        y = o[j];
      } else {
        for (int i = 0; i < d; ++i) y += o[i] * (*rv)[(std::size_t(m) * d + j) * d + i];
      }
      out[std::size_t(h) * d + j] = y;
    }
  }
  return out;
}

struct CacheCase {
  int kv_heads, head_dim, query_heads, sink, window, block;
  std::int64_t tokens;
  int matrices;  // 0: no rotation
  int group_size;
  ScaleType scale_type;
  std::vector<std::int64_t> chunks;  // append sizes (repeated until `tokens`)
};

void run_cache_case(const CacheCase& cc) {
  const int d = cc.head_dim, hkv = cc.kv_heads;
  CudaCacheConfig config = CudaCacheConfig::make(hkv, d, cc.tokens + 16);
  config.sink_tokens = cc.sink;
  config.recent_tokens = cc.window;
  config.block_tokens = cc.block;
  config.key_int2.group_size = config.value_int2.group_size = cc.group_size;
  config.key_int2.scale_type = config.value_int2.scale_type = cc.scale_type;
  std::vector<float> rk, rv;
  if (cc.matrices > 0) {
    rk = random_rotations(d, cc.matrices, 100u + unsigned(d));
    rv = random_rotations(d, cc.matrices, 200u + unsigned(d));
  }
  const std::vector<float>* prk = cc.matrices > 0 ? &rk : nullptr;
  const std::vector<float>* prv = cc.matrices > 0 ? &rv : nullptr;
  CudaMixedCache cache(config, prk ? rk.data() : nullptr, prv ? rv.data() : nullptr, std::max(cc.matrices, 1));

  const std::vector<float> k = random_rows(cc.tokens * hkv, d, 1u), v = random_rows(cc.tokens * hkv, d, 2u);
  const std::size_t token_floats = std::size_t(hkv) * d;
  std::int64_t done = 0;
  for (std::size_t i = 0; done < cc.tokens; ++i) {
    const std::int64_t n = std::min(cc.chunks[i % cc.chunks.size()], cc.tokens - done);
    cache.append(k.data() + done * token_floats, v.data() + done * token_floats, n);
    done += n;
    // Occupancy: the window holds W … W+7 once W+8 tokens followed the sink.
    const std::int64_t after_sink = std::max<std::int64_t>(0, done - cc.sink);
    const std::int64_t expected_int2 = after_sink >= cc.window + 8 ? (after_sink - cc.window) / 8 * 8 : 0;
    ASSERT_EQ(cache.int2_size(), expected_int2) << "after " << done << " tokens";
    ASSERT_EQ(cache.sink_size(), std::min<std::int64_t>(done, cc.sink));
    ASSERT_EQ(cache.recent_size(), after_sink - expected_int2);
  }

  // Stored bytes: full-precision rows and INT2 rows exactly as the spec computes them.
  const ExpectedCache e = expected_rows(k, v, d, hkv, prk, prv, std::max(cc.matrices, 1));
  const std::int64_t n2 = cache.int2_size(), nfp = cache.sink_size() + cache.recent_size();
  std::vector<float> keys(std::size_t(cc.tokens) * token_floats), values(keys.size());
  for (int kind = 0; kind < 2; ++kind) {
    const std::vector<float>& fp = kind == 0 ? e.k_fp : e.v_fp;
    std::vector<float>& dense = kind == 0 ? keys : values;
    std::vector<std::uint16_t> got(std::size_t(nfp) * token_floats);
    cache.download_full_precision(kind == 1, got.data());
    for (std::int64_t i = 0; i < nfp; ++i) {
      const std::int64_t t = i < cache.sink_size() ? i : i + n2;  // sequence position
      for (std::size_t x = 0; x < token_floats; ++x) {
        const float stored = bfloat16_to_float(got[std::size_t(i) * token_floats + x]);
        ASSERT_EQ(float_to_bits(stored), float_to_bits(fp[std::size_t(t) * token_floats + x]))
            << "kind " << kind << " full-precision token " << t;
        dense[std::size_t(t) * token_floats + x] = stored;
      }
    }
    if (n2 == 0) continue;
    const Int2Config& f = kind == 0 ? config.key_int2 : config.value_int2;
    HostRows got_int2(n2 * hkv, f), want(n2 * hkv, f);
    cache.download_int2(kind == 1, got_int2.codes.data(), got_int2.scales.data(), got_int2.zeros.data());
    quantize_rows_reference(fp.data() + std::size_t(cc.sink) * token_floats, n2 * hkv, f, want.rows());
    ASSERT_TRUE(same_bytes(want, got_int2, f)) << "kind " << kind;
    std::vector<float> deq(std::size_t(n2) * token_floats);
    dequantize_rows_reference(got_int2.const_rows(), n2 * hkv, f, deq.data());
    std::copy(deq.begin(), deq.end(), dense.begin() + std::size_t(cc.sink) * token_floats);
  }

  // Decode attention against dense attention over the same rows, with either INT2 decode kernel (tensor cores
  // with splits sized to one wave and to four, with programmatic dependent launches and without).
  std::vector<float> q = random_rows(cc.query_heads, d, 3u);
  const std::vector<double> want =
      dense_attention(q, cc.query_heads, keys, values, cc.tokens, hkv, d, prk, prv, std::max(cc.matrices, 1));
  struct Variant {
    gpu::DecodeKernel kernel;
    int waves;
    bool overlap;
    const char* name;
  };
  for (const Variant& variant : {Variant{gpu::DecodeKernel::kCudaCores, 1, true, "CUDA cores"},
                                 Variant{gpu::DecodeKernel::kTensorCores, 1, true, "tensor cores"},
                                 Variant{gpu::DecodeKernel::kTensorCores, 4, true, "tensor cores, 4 waves"},
                                 Variant{gpu::DecodeKernel::kTensorCores, 1, false, "tensor cores, plain launches"}}) {
    const char* name = variant.name;
    cache.set_decode_kernel(variant.kernel);
    cache.set_decode_waves(variant.waves);
    cache.set_overlap_launches(variant.overlap);
    std::vector<float> out(q.size());
    cache.decode(q.data(), cc.query_heads, out.data());
    double worst = 0.0, biggest = 0.0;
    for (std::size_t i = 0; i < want.size(); ++i) {
      ASSERT_TRUE(std::isfinite(out[i])) << name;
      worst = std::max(worst, std::fabs(double(out[i]) - want[i]));
      biggest = std::max(biggest, std::fabs(want[i]));
    }
    EXPECT_LE(worst, 1e-3 * biggest) << name << ": max |gpu − dense| " << worst << ", max |dense| " << biggest
                                     << ", " << cache.last_decode_splits() << " splits";
  }
}

TEST(CudaMixedCache, SinkOnly) {
  REQUIRE_CUDA_DEVICE();
  run_cache_case({8, 128, 32, 64, 256, 64, 40, 1, 128, ScaleType::kFloat32, {40}});
}

TEST(CudaMixedCache, DecodeStepsDemoteEveryEighth) {
  REQUIRE_CUDA_DEVICE();
  run_cache_case({8, 128, 32, 64, 256, 64, 64 + 256 + 8 * 5 + 3, 1, 128, ScaleType::kFloat32, {1}});
}

TEST(CudaMixedCache, ChunkedPrefillLongContextPerHeadRotations) {
  REQUIRE_CUDA_DEVICE();
  run_cache_case({8, 128, 32, 64, 256, 64, 20000, 8, 128, ScaleType::kFloat32, {4096, 1, 777, 8}});
}

TEST(CudaMixedCache, HeadDim64Float16ScalesGroups32NoGqa) {
  REQUIRE_CUDA_DEVICE();
  run_cache_case({4, 64, 4, 16, 32, 24, 3001, 1, 32, ScaleType::kFloat16, {1000, 5}});
}

TEST(CudaMixedCache, HeadDim256Groups64WideGqa) {
  REQUIRE_CUDA_DEVICE();
  // 12 query heads per KV head: two launches of the split kernel (8 + 4).
  run_cache_case({2, 256, 24, 64, 256, 128, 2500, 2, 64, ScaleType::kFloat32, {300}});
}

TEST(CudaMixedCache, Groups32AtHeadDims128And256) {
  REQUIRE_CUDA_DEVICE();
  // The tensor-core kernel's 4 and 8 groups per row (value tiles of one group, key slices summed per group).
  run_cache_case({8, 128, 32, 64, 256, 64, 6000, 1, 32, ScaleType::kFloat16, {2048}});
  run_cache_case({2, 256, 8, 8, 32, 16, 1500, 1, 32, ScaleType::kFloat32, {100, 7}});
}

TEST(CudaMixedCache, NoSinkNoWindow) {
  REQUIRE_CUDA_DEVICE();
  run_cache_case({8, 128, 8, 0, 0, 8, 1203, 0, 128, ScaleType::kFloat16, {1, 50, 3}});
}

TEST(CudaMixedCache, FullPrecisionOnlyNeverDemotes) {
  REQUIRE_CUDA_DEVICE();
  CudaMixedCache cache(CudaCacheConfig::full_precision_only(8, 128, 5000));
  const std::vector<float> k = random_rows(5000 * 8, 128, 1u);
  cache.append(k.data(), k.data(), 5000);
  EXPECT_EQ(cache.int2_size(), 0);
  EXPECT_EQ(cache.sink_size(), 5000);
  std::vector<float> q = random_rows(32, 128, 2u), out(q.size());
  cache.decode(q.data(), 32, out.data());
  for (float x : out) EXPECT_TRUE(std::isfinite(x));
}

TEST(CudaMixedCache, CapacityAndArguments) {
  REQUIRE_CUDA_DEVICE();
  CudaMixedCache cache(CudaCacheConfig::make(8, 128, 100));
  std::vector<float> q(32 * 128, 0.5f), out(q.size());
  EXPECT_THROW(cache.decode(q.data(), 32, out.data()), std::logic_error);
  const std::vector<float> k = random_rows(101 * 8, 128, 1u);
  EXPECT_THROW(cache.append(k.data(), k.data(), 101), std::length_error);
  cache.append(k.data(), k.data(), 100);
  EXPECT_THROW(cache.decode(q.data(), 12, out.data()), std::invalid_argument);
}

}  // namespace
}  // namespace oscar::runtime
