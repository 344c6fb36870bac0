// The decode kernels' own source run on the CPU through cuda_emulation.h (a std::thread per CUDA thread;
// shuffles, barriers and mma.sync emulated): the tensor-core kernels (decode_mma_kernel.cuh,
// decode_bf16_mma_kernel.cuh) and the CUDA-core one (decode_split_kernel.cuh), on INT2 page pools and bf16
// sinks and rings built here, merged here by log-sum-exp, and compared with dense attention (in double) over
// the rows as the CPU runtime's reference dequantises them. Runs on any machine: what CI can check of the
// kernels without a GPU (the GPU tests in test_cuda_runtime.cpp check them on the device). Likewise the merge
// kernel (decode_merge.cuh) against the log-sum-exp formula.
#include "cuda_emulation.h"  // first: the CUDA built-ins for the kernel headers
#include "runtime/cuda/decode_bf16_mma_kernel.cuh"
#include "runtime/cuda/decode_merge.cuh"
#include "runtime/cuda/decode_mma_kernel.cuh"
#include "runtime/cuda/decode_split_kernel.cuh"
#include "core/dtype.h"
#include "runtime/int2_quantize.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <vector>

namespace oscar::runtime {
namespace {

namespace detail = gpu::detail;

struct EmulatedCase {
  int head_dim, group_size, kv_heads, group_heads, page_tokens;
  std::int64_t tokens, chunk;
  bool float16;
  bool adversarial;  // large zero offsets, scales over 2^±10, a zero scale
};

/// INT2 page pools of random codes, scales and zeros (stored as the format stores them), and every row
/// dequantised by the CPU runtime's reference.
struct Pools {
  Int2Config format;
  int page_tokens = 0;
  std::vector<int> page_table;
  std::vector<std::uint8_t> codes[2], scales[2], zeros[2];
  std::vector<float> dequantized[2];  // [pool row][d]

  /// Dequantised row of token t of KV head h.
  const float* row(int kind, std::int64_t t, int h, int kv_heads) const {
    const std::int64_t r = (std::int64_t(page_table[std::size_t(t / page_tokens)]) * kv_heads + h) * page_tokens +
                           t % page_tokens;
    return dequantized[kind].data() + std::size_t(r) * std::size_t(format.head_dim);
  }
};

Pools make_pools(const EmulatedCase& c, std::uint32_t seed) {
  const int d = c.head_dim, groups = d / c.group_size;
  const std::int64_t pages = (c.tokens + c.page_tokens - 1) / c.page_tokens;
  const std::int64_t rows = pages * c.kv_heads * c.page_tokens;
  std::mt19937 rng(seed);
  Pools pools;
  pools.format = Int2Config{d, c.group_size, 0.0, c.float16 ? ScaleType::kFloat16 : ScaleType::kFloat32,
                            Encoding::kMinMax};
  pools.page_tokens = c.page_tokens;
  pools.page_table.resize(std::size_t(pages));
  std::iota(pools.page_table.begin(), pools.page_table.end(), 0);
  std::shuffle(pools.page_table.begin(), pools.page_table.end(), rng);
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  const std::size_t scale_bytes = c.float16 ? 2 : 4, n = std::size_t(rows) * std::size_t(groups);
  for (int kind = 0; kind < 2; ++kind) {
    pools.codes[kind].resize(std::size_t(rows) * std::size_t(d / 4));
    for (auto& b : pools.codes[kind]) b = std::uint8_t(byte(rng));
    pools.scales[kind].resize(n * scale_bytes);
    pools.zeros[kind].resize(n * scale_bytes);
    for (std::size_t i = 0; i < n; ++i) {
      float scale = 0.05f + unit(rng), zero = 3.0f * unit(rng);
      if (c.adversarial) {
        scale = std::ldexp(0.5f + unit(rng), int(20.0f * unit(rng)) - 10);
        zero = i % 7 == 0 ? 1000.0f * unit(rng) : zero;
        if (i == n / 2) scale = 0.0f;
      }
      store_scale(pools.scales[kind].data(), std::int64_t(i), pools.format.scale_type, scale);
      store_scale(pools.zeros[kind].data(), std::int64_t(i), pools.format.scale_type, zero);
    }
    pools.dequantized[kind].resize(std::size_t(rows) * std::size_t(d));
    dequantize_rows_reference({pools.codes[kind].data(), pools.scales[kind].data(), pools.zeros[kind].data()}, rows,
                              pools.format, pools.dequantized[kind].data());
  }
  return pools;
}

/// The merge by log-sum-exp (base 2) of query head hq's partials of splits first … first + splits − 1, in double.
std::vector<double> merge_formula(const std::vector<float>& part_m, const std::vector<float>& part_l,
                                  const std::vector<float>& part_acc, int first, int splits, int query_heads, int d,
                                  int hq) {
  double big = -INFINITY, total = 0.0;
  for (int s = first; s < first + splits; ++s) big = std::max(big, double(part_m[std::size_t(s) * query_heads + hq]));
  std::vector<double> o(std::size_t(d), 0.0);
  for (int s = first; s < first + splits; ++s) {
    const std::size_t i = std::size_t(s) * query_heads + hq;
    if (std::isinf(part_m[i])) continue;
    const double w = std::exp2(double(part_m[i]) - big);
    total += w * part_l[i];
    for (int e = 0; e < d; ++e) o[std::size_t(e)] += w * part_acc[i * std::size_t(d) + std::size_t(e)];
  }
  for (double& x : o) x /= total;
  return o;
}

/// softmax(q·k_t / √d) · v_t over `tokens` tokens, in double; key(t) and value(t) give the rows as floats.
template <class Key, class Value>
std::vector<double> dense_attention(const float* q, std::int64_t tokens, int d, const Key& key, const Value& value) {
  const double softmax_scale = 1.0 / std::sqrt(double(d));
  std::vector<double> score(static_cast<std::size_t>(tokens));
  double top = -INFINITY;
  for (std::int64_t t = 0; t < tokens; ++t) {
    double dot = 0.0;
    const float* k = key(t);
    for (int j = 0; j < d; ++j) dot += double(q[j]) * k[j];
    score[std::size_t(t)] = dot * softmax_scale;
    top = std::max(top, score[std::size_t(t)]);
  }
  double sum = 0.0;
  std::vector<double> out(std::size_t(d), 0.0);
  for (std::int64_t t = 0; t < tokens; ++t) {
    const double w = std::exp(score[std::size_t(t)] - top);
    sum += w;
    const float* v = value(t);
    for (int j = 0; j < d; ++j) out[std::size_t(j)] += w * v[j];
  }
  for (double& x : out) x /= sum;
  return out;
}

/// Largest |got − want| and largest |want| so far.
struct Worst {
  double error = 0.0, magnitude = 0.0;
  void add(const std::vector<double>& got, const std::vector<double>& want) {
    for (std::size_t j = 0; j < want.size(); ++j) {
      EXPECT_TRUE(std::isfinite(got[j])) << "element " << j;
      error = std::max(error, std::fabs(got[j] - want[j]));
      magnitude = std::max(magnitude, std::fabs(want[j]));
    }
  }
};

/// A DecodeLaunch of random queries for the geometry; the caller adds the segment.
detail::DecodeLaunch make_launch(int d, int kv_heads, int group_heads, std::vector<float>& q, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  q.resize(std::size_t(kv_heads * group_heads) * std::size_t(d));
  for (float& x : q) x = normal(rng);
  detail::DecodeLaunch p;
  p.head_dim = d;
  p.kv_heads = kv_heads;
  p.group_heads = group_heads;
  p.score_scale_log2 = float(1.4426950408889634 / std::sqrt(double(d)));
  p.q = q.data();
  return p;
}

/// A bf16 sink and recent ring of random rows (stored as bf16) for every KV head, and the rows widened in
/// segment order (sink, then the ring from ring_start).
struct Bf16Segment {
  int sink = 0, recent = 0, ring_capacity = 1, ring_start = 0;
  std::int64_t chunk = 128;
};

struct Bf16Pools {
  std::vector<std::uint16_t> rows[2][2];  // [key, value][sink, ring]
  std::vector<float> wide[2];             // [token][Hkv][d]
  std::size_t token_values = 0;
  const float* row(int kind, std::int64_t t, int h, int d) const {
    return wide[kind].data() + std::size_t(t) * token_values + std::size_t(h) * std::size_t(d);
  }
};

Bf16Pools make_bf16_pools(int d, int kv_heads, const Bf16Segment& c, std::uint32_t seed) {
  Bf16Pools pools;
  pools.token_values = std::size_t(kv_heads) * std::size_t(d);
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (auto& kind : pools.rows) {
    kind[0].resize(std::size_t(c.sink) * pools.token_values);
    kind[1].resize(std::size_t(c.ring_capacity) * pools.token_values);
    for (auto& segment : kind) {
      for (std::uint16_t& x : segment) x = float_to_bfloat16(normal(rng) * 2.0f);
    }
  }
  for (int kind = 0; kind < 2; ++kind) {
    for (std::int64_t t = 0; t < c.sink + c.recent; ++t) {
      const bool in_sink = t < c.sink;
      const std::int64_t slot = in_sink ? t : (c.ring_start + t - c.sink) % c.ring_capacity;
      const std::uint16_t* row = pools.rows[kind][in_sink ? 0 : 1].data() + std::size_t(slot) * pools.token_values;
      for (std::size_t x = 0; x < pools.token_values; ++x) pools.wide[kind].push_back(bfloat16_to_float(row[x]));
    }
  }
  return pools;
}

void attach_bf16(detail::DecodeLaunch& p, const Bf16Pools& pools, const Bf16Segment& c) {
  p.sink_k = pools.rows[0][0].data();
  p.sink_v = pools.rows[1][0].data();
  p.ring_k = pools.rows[0][1].data();
  p.ring_v = pools.rows[1][1].data();
  p.sink_tokens = c.sink;
  p.recent_tokens = c.recent;
  p.ring_start = c.ring_start;
  p.ring_capacity = c.ring_capacity;
  p.fp_chunk = c.chunk;
  p.fp_splits = int((c.sink + c.recent + c.chunk - 1) / c.chunk);
}

/// Partials for every split of the launch, wired into it.
struct Partials {
  std::vector<float> m, l, acc;
  Partials(detail::DecodeLaunch& p, int splits) {
    const std::size_t n = std::size_t(splits) * std::size_t(p.kv_heads * p.group_heads);
    m.resize(n);
    l.resize(n);
    acc.resize(n * std::size_t(p.head_dim));
    p.part_m = m.data();
    p.part_l = l.data();
    p.part_acc = acc.data();
  }
};

/// Runs a tensor-core kernel over the launch's grid: (splits, Hkv, head launches), as launch_decode_mma does.
template <class Kernel>
void run_grid(const detail::DecodeLaunch& p, int splits, const Kernel& kernel) {
  cuda_emulation::launch(
      {unsigned(splits), unsigned(p.kv_heads), unsigned(detail::decode_head_launches(p.group_heads))},
      detail::mma_decode::kThreads, [&] { kernel(p); });
}

void run_mixed_kernel(const detail::DecodeLaunch& p) {
  const int groups = p.head_dim / p.k_group_size;
  const int splits = p.int2_splits + p.fp_splits;
  namespace kernels = detail::mma_decode;
  switch (p.head_dim * 10 + groups) {
    case 641: return run_grid(p, splits, kernels::decode_mixed_mma_kernel<64, 1>);
    case 642: return run_grid(p, splits, kernels::decode_mixed_mma_kernel<64, 2>);
    case 1281: return run_grid(p, splits, kernels::decode_mixed_mma_kernel<128, 1>);
    case 1282: return run_grid(p, splits, kernels::decode_mixed_mma_kernel<128, 2>);
    case 1284: return run_grid(p, splits, kernels::decode_mixed_mma_kernel<128, 4>);
    case 2561: return run_grid(p, splits, kernels::decode_mixed_mma_kernel<256, 1>);
    case 2564: return run_grid(p, splits, kernels::decode_mixed_mma_kernel<256, 4>);
    case 2568: return run_grid(p, splits, kernels::decode_mixed_mma_kernel<256, 8>);
    default: FAIL() << "no kernel for d " << p.head_dim << ", " << groups << " groups";
  }
}

/// The CUDA-core split kernel over every split: one launch per ≤ 8 query heads, as decode.cu does.
void run_cuda_core_kernel(const detail::DecodeLaunch& p) {
  const int splits = p.int2_splits + p.fp_splits;
  detail::with_decode_head_dim(p.head_dim, [&](auto d) {
    detail::for_each_head_launch(p.group_heads, [&](int base, int heads) {
      cuda_emulation::launch({unsigned(splits), unsigned(p.kv_heads), 1}, detail::cuda_core_decode::kThreads, [&] {
        detail::cuda_core_decode::decode_split_kernel<decltype(d)::value>(p, base, heads);
      });
    });
  });
}

enum class Family { kTensorCores, kCudaCores };

/// A split kernel over an INT2 segment (and, when `fp` is given, a bf16 sink and ring in the same launch)
/// against dense attention over all of their rows.
void check_case(const EmulatedCase& c, std::uint32_t seed, const Bf16Segment* fp = nullptr,
                Family family = Family::kTensorCores) {
  const int d = c.head_dim, query_heads = c.kv_heads * c.group_heads;
  const Pools pools = make_pools(c, seed);
  std::vector<float> q;
  detail::DecodeLaunch p = make_launch(d, c.kv_heads, c.group_heads, q, seed + 7);
  p.int2_tokens = c.tokens;
  p.page_tokens = detail::FastDivider::make(std::uint32_t(c.page_tokens));
  p.page_table = pools.page_table.data();
  p.k_codes = pools.codes[0].data();
  p.v_codes = pools.codes[1].data();
  p.k_scales = pools.scales[0].data();
  p.k_zeros = pools.zeros[0].data();
  p.v_scales = pools.scales[1].data();
  p.v_zeros = pools.zeros[1].data();
  p.k_group_size = p.v_group_size = c.group_size;
  p.k_float16 = p.v_float16 = c.float16;
  p.int2_chunk = c.chunk;
  p.int2_splits = int((c.tokens + c.chunk - 1) / c.chunk);
  if (family == Family::kTensorCores) {
    ASSERT_TRUE(detail::int2_mma_decode_supported(d, c.group_size, c.group_size));
    ASSERT_EQ(c.chunk % detail::mma::kTileTokens, 0);
  }
  const Bf16Pools fp_pools = make_bf16_pools(d, c.kv_heads, fp ? *fp : Bf16Segment{}, seed + 11);
  if (fp != nullptr) attach_bf16(p, fp_pools, *fp);
  const std::int64_t fp_tokens = fp ? fp->sink + fp->recent : 0;
  const int splits = p.int2_splits + p.fp_splits;
  Partials partials(p, splits);
  if (family == Family::kTensorCores) {
    run_mixed_kernel(p);
  } else {
    run_cuda_core_kernel(p);
  }

  Worst worst;
  for (int hq = 0; hq < query_heads; ++hq) {
    const int h = hq / c.group_heads;
    auto row = [&](int kind) {
      return [&, kind](std::int64_t t) {
        return t < c.tokens ? pools.row(kind, t, h, c.kv_heads) : fp_pools.row(kind, t - c.tokens, h, d);
      };
    };
    worst.add(merge_formula(partials.m, partials.l, partials.acc, 0, splits, query_heads, d, hq),
              dense_attention(q.data() + std::size_t(hq) * d, c.tokens + fp_tokens, d, row(0), row(1)));
  }
  EXPECT_LE(worst.error, 1e-5 * worst.magnitude) << "d " << d << ", group " << c.group_size << ", " << fp_tokens
                                                 << " bf16 tokens: max |kernel − dense| " << worst.error
                                                 << ", max |dense| " << worst.magnitude;
}

TEST(DecodeMmaEmulated, HeadDim128OneGroupGqa4Pages64) {
  check_case({128, 128, 2, 4, 64, 1000, 256, false, false}, 1u);
}

TEST(DecodeMmaEmulated, HeadDim128Groups32Float16Pages24Gqa8) {
  check_case({128, 32, 1, 8, 24, 700, 256, true, false}, 2u);
}

TEST(DecodeMmaEmulated, HeadDim64Groups32Pages8NoGqa) {
  check_case({64, 32, 2, 1, 8, 501, 128, true, false}, 3u);
}

TEST(DecodeMmaEmulated, HeadDim256Groups64TwelveQueryHeads) {
  check_case({256, 64, 1, 12, 16, 397, 128, false, false}, 4u);
}

TEST(DecodeMmaEmulated, AdversarialScalesAndZeros) {
  check_case({128, 64, 1, 4, 64, 600, 256, false, true}, 5u);
  check_case({256, 256, 1, 3, 64, 300, 128, true, true}, 6u);
}

// One launch for a mixed cache: INT2 blocks and bf16 blocks (sink, wrapped ring) of the same grid.
TEST(DecodeMmaEmulated, MixedCacheInOneLaunch) {
  const Bf16Segment window{16, 45, 48, 40, 32};
  check_case({128, 64, 2, 4, 32, 300, 128, false, false}, 7u, &window);
  const Bf16Segment wide_window{8, 30, 40, 30, 64};
  check_case({64, 64, 1, 12, 16, 200, 64, true, false}, 8u, &wide_window);
}

// ---- The CUDA-core split kernel (the default) ----------------------------------------------------------------------

// INT2 and bf16 splits of one launch, ragged chunks (not whole 32-token warp tiles), shuffled pages.
TEST(DecodeSplitEmulated, MixedCacheHeadDim128Gqa4) {
  const Bf16Segment window{16, 45, 48, 40, 40};
  check_case({128, 128, 2, 4, 24, 500, 200, false, false}, 31u, &window, Family::kCudaCores);
}

// Groups of 32 with float16 scales, 12 query heads per KV head (two launches: 8 + 4), d 64 and 256.
TEST(DecodeSplitEmulated, GroupsAndTwoHeadLaunches) {
  const Bf16Segment window{8, 30, 40, 30, 64};
  check_case({64, 32, 1, 12, 8, 300, 96, true, false}, 32u, &window, Family::kCudaCores);
  check_case({256, 64, 1, 3, 64, 200, 128, false, true}, 33u, nullptr, Family::kCudaCores);
}

// ---- bf16 segments ------------------------------------------------------------------------------------------------

/// The bf16-only kernel over a sink and a recent ring against dense attention over them; its splits follow
/// `int2_splits` INT2 splits (whose partials it does not write).
template <int D>
void check_bf16_case(int kv_heads, int group_heads, const Bf16Segment& c, int int2_splits, std::uint32_t seed) {
  const int query_heads = kv_heads * group_heads;
  const Bf16Pools pools = make_bf16_pools(D, kv_heads, c, seed);
  std::vector<float> q;
  detail::DecodeLaunch p = make_launch(D, kv_heads, group_heads, q, seed + 1);
  attach_bf16(p, pools, c);
  p.int2_splits = int2_splits;
  Partials partials(p, p.int2_splits + p.fp_splits);
  run_grid(p, p.fp_splits, detail::mma_decode::decode_bf16_mma_kernel<D>);

  Worst worst;
  for (int hq = 0; hq < query_heads; ++hq) {
    const int h = hq / group_heads;
    auto row = [&](int kind) { return [&, kind](std::int64_t t) { return pools.row(kind, t, h, D); }; };
    worst.add(merge_formula(partials.m, partials.l, partials.acc, p.int2_splits, p.fp_splits, query_heads, D, hq),
              dense_attention(q.data() + std::size_t(hq) * D, c.sink + c.recent, D, row(0), row(1)));
  }
  EXPECT_LE(worst.error, 1e-5 * worst.magnitude) << "d " << D << ": max |kernel − dense| " << worst.error
                                                 << ", max |dense| " << worst.magnitude;
}

TEST(DecodeMmaEmulated, Bf16SinkAndWrappedRing) {
  check_bf16_case<128>(2, 4, {64, 263, 264, 200, 128}, 3, 21u);
  check_bf16_case<64>(1, 8, {8, 37, 40, 35, 128}, 0, 22u);
}

TEST(DecodeMmaEmulated, Bf16FullPrecisionOnlyHeadDim256TwelveQueryHeads) {
  check_bf16_case<256>(1, 12, {500, 0, 1, 0, 256}, 0, 23u);
}

// ---- Merges ------------------------------------------------------------------------------------------------------

/// The merge kernel on random partials (some splits empty: m = −inf) against the formula in double:
/// y = R·(Σ_s acc_s·2^(m_s−M) / Σ_s l_s·2^(m_s−M)), R per layer or per KV head.
void check_merges(int d, int kv_heads, int group_heads, int splits, int matrices, std::uint32_t seed) {
  const int query_heads = kv_heads * group_heads;
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> unit(0.0f, 1.0f);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> part_m(std::size_t(splits) * query_heads), part_l(part_m.size()),
      part_acc(part_m.size() * std::size_t(d));
  for (std::size_t i = 0; i < part_m.size(); ++i) {
    const bool empty = i % 11 == 3;
    part_m[i] = empty ? -INFINITY : 40.0f * unit(rng) - 20.0f;
    part_l[i] = empty ? 0.0f : 1.0f + 50.0f * unit(rng);
    for (int e = 0; e < d; ++e) part_acc[i * std::size_t(d) + std::size_t(e)] = empty ? 0.0f : part_l[i] * normal(rng);
  }
  std::vector<float> rotation(std::size_t(matrices) * d * d);
  for (float& x : rotation) x = normal(rng) / std::sqrt(float(d));

  detail::DecodeLaunch p;
  p.head_dim = d;
  p.kv_heads = kv_heads;
  p.group_heads = group_heads;
  p.part_m = part_m.data();
  p.part_l = part_l.data();
  p.part_acc = part_acc.data();
  p.value_rotation = matrices > 0 ? rotation.data() : nullptr;
  p.value_matrices = std::max(matrices, 1);
  std::vector<double> want(std::size_t(query_heads) * d);
  for (int hq = 0; hq < query_heads; ++hq) {
    const std::vector<double> o = merge_formula(part_m, part_l, part_acc, 0, splits, query_heads, d, hq);
    const float* r = rotation.data() + std::size_t(matrices == 1 ? 0 : hq / group_heads) * d * d;
    for (int j = 0; j < d; ++j) {
      double y = 0.0;
      for (int i = 0; i < d; ++i) y += (matrices > 0 ? r[std::size_t(j) * d + std::size_t(i)] : (i == j ? 1.0 : 0.0)) * o[std::size_t(i)];
      want[std::size_t(hq) * d + std::size_t(j)] = y;
    }
  }
  std::vector<float> out(want.size(), NAN);
  p.out = out.data();
  cuda_emulation::launch({unsigned(query_heads), 1, 1}, detail::merge::kMergeThreads,
                         [&] { detail::merge::decode_merge_kernel(p, splits); });
  double worst = 0.0, biggest = 0.0;
  for (std::size_t i = 0; i < want.size(); ++i) {
    ASSERT_TRUE(std::isfinite(out[i])) << "element " << i;
    worst = std::max(worst, std::fabs(double(out[i]) - want[i]));
    biggest = std::max(biggest, std::fabs(want[i]));
  }
  EXPECT_LE(worst, 1e-5 * biggest) << "d " << d << ", " << splits << " splits: max |kernel − formula| " << worst
                                   << ", max " << biggest;
}

TEST(DecodeMergeEmulated, MergeEqualsTheFormula) {
  check_merges(128, 2, 3, 37, 1, 11u);
  check_merges(64, 1, 2, 5, 0, 12u);
  check_merges(256, 2, 1, 3, 2, 13u);
}

TEST(DecodeMergeEmulated, MoreSplitsThanOneWeightTile) {
  check_merges(128, 1, 2, detail::merge::kMergeTile + 300, 1, 14u);
}

}  // namespace
}  // namespace oscar::runtime
