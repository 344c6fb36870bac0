// The tensor-core decode kernel's own source (lib/runtime/cuda/decode_mma_kernel.cuh) run on the CPU through
// cuda_emulation.h (a std::thread per CUDA thread; shuffles, barriers and mma.sync emulated), on INT2 page pools
// built here, merged here by log-sum-exp, and compared with dense attention (in double) over the rows as the
// CPU runtime's reference dequantises them. Runs on any machine: what CI can check of the kernel without a GPU
// (the GPU tests in test_cuda_runtime.cpp check it on the device). Likewise both merge kernels
// (decode_merge.cuh) against the log-sum-exp formula.
#include "cuda_emulation.h"  // first: the CUDA built-ins for the kernel header
#include "runtime/cuda/decode_merge.cuh"
#include "runtime/cuda/decode_mma_kernel.cuh"
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

/// The merge by log-sum-exp (base 2) of query head hq's partials over `splits` splits, in double.
std::vector<double> merge_formula(const std::vector<float>& part_m, const std::vector<float>& part_l,
                                  const std::vector<float>& part_acc, int splits, int query_heads, int d, int hq) {
  double big = -INFINITY, total = 0.0;
  for (int s = 0; s < splits; ++s) big = std::max(big, double(part_m[std::size_t(s) * query_heads + hq]));
  std::vector<double> o(std::size_t(d), 0.0);
  for (int s = 0; s < splits; ++s) {
    const std::size_t i = std::size_t(s) * query_heads + hq;
    if (std::isinf(part_m[i])) continue;
    const double w = std::exp2(double(part_m[i]) - big);
    total += w * part_l[i];
    for (int e = 0; e < d; ++e) o[std::size_t(e)] += w * part_acc[i * std::size_t(d) + std::size_t(e)];
  }
  for (double& x : o) x /= total;
  return o;
}

template <int D, int NG>
void run_kernel(const detail::DecodeLaunch& p) {
  detail::for_each_head_launch(p.group_heads, [&](int base, int heads) {
    cuda_emulation::launch({unsigned(p.int2_splits), unsigned(p.kv_heads), 1}, detail::mma_decode::kThreads,
                           [&] { detail::mma_decode::decode_int2_mma_kernel<D, NG>(p, base, heads); });
  });
}

void dispatch(const detail::DecodeLaunch& p) {
  const int groups = p.head_dim / p.k_group_size;
  switch (p.head_dim * 10 + groups) {
    case 641: return run_kernel<64, 1>(p);
    case 642: return run_kernel<64, 2>(p);
    case 1281: return run_kernel<128, 1>(p);
    case 1282: return run_kernel<128, 2>(p);
    case 1284: return run_kernel<128, 4>(p);
    case 2561: return run_kernel<256, 1>(p);
    case 2564: return run_kernel<256, 4>(p);
    case 2568: return run_kernel<256, 8>(p);
    default: FAIL() << "no kernel for d " << p.head_dim << ", " << groups << " groups";
  }
}

void check_case(const EmulatedCase& c, std::uint32_t seed) {
  const int d = c.head_dim, query_heads = c.kv_heads * c.group_heads;
  const Pools pools = make_pools(c, seed);
  std::mt19937 rng(seed + 7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> q(std::size_t(query_heads) * d);
  for (float& x : q) x = normal(rng);
  const double softmax_scale = 1.0 / std::sqrt(double(d));

  detail::DecodeLaunch p;
  p.head_dim = d;
  p.kv_heads = c.kv_heads;
  p.group_heads = c.group_heads;
  p.score_scale_log2 = float(softmax_scale * 1.4426950408889634);
  p.q = q.data();
  p.int2_tokens = c.tokens;
  p.page_tokens = c.page_tokens;
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
  ASSERT_TRUE(detail::int2_mma_decode_supported(d, c.group_size, c.group_size, c.chunk));
  std::vector<float> part_m(std::size_t(p.int2_splits) * query_heads), part_l(part_m.size()),
      part_acc(part_m.size() * std::size_t(d));
  p.part_m = part_m.data();
  p.part_l = part_l.data();
  p.part_acc = part_acc.data();
  dispatch(p);

  double worst = 0.0, biggest = 0.0;
  for (int hq = 0; hq < query_heads; ++hq) {
    const int h = hq / c.group_heads;
    const std::vector<double> got = merge_formula(part_m, part_l, part_acc, p.int2_splits, query_heads, d, hq);
    // Dense attention over the dequantised rows.
    std::vector<double> score(std::size_t(c.tokens));
    double top = -INFINITY;
    for (std::int64_t t = 0; t < c.tokens; ++t) {
      double dot = 0.0;
      const float* k = pools.row(0, t, h, c.kv_heads);
      for (int j = 0; j < d; ++j) dot += double(q[std::size_t(hq) * d + std::size_t(j)]) * k[j];
      score[std::size_t(t)] = dot * softmax_scale;
      top = std::max(top, score[std::size_t(t)]);
    }
    double sum = 0.0;
    std::vector<double> want(std::size_t(d), 0.0);
    for (std::int64_t t = 0; t < c.tokens; ++t) {
      const double w = std::exp(score[std::size_t(t)] - top);
      sum += w;
      const float* v = pools.row(1, t, h, c.kv_heads);
      for (int j = 0; j < d; ++j) want[std::size_t(j)] += w * v[j];
    }
    for (int j = 0; j < d; ++j) {
      ASSERT_TRUE(std::isfinite(got[std::size_t(j)])) << "head " << hq << " dim " << j;
      worst = std::max(worst, std::fabs(got[std::size_t(j)] - want[std::size_t(j)] / sum));
      biggest = std::max(biggest, std::fabs(want[std::size_t(j)] / sum));
    }
  }
  EXPECT_LE(worst, 1e-5 * biggest) << "d " << d << ", group " << c.group_size << ": max |kernel − dense| " << worst
                                   << ", max |dense| " << biggest;
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

// ---- Merges ------------------------------------------------------------------------------------------------------

/// Both merge kernels on random partials (some splits empty: m = −inf) against the formula in double:
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
    const std::vector<double> o = merge_formula(part_m, part_l, part_acc, splits, query_heads, d, hq);
    const float* r = rotation.data() + std::size_t(matrices == 1 ? 0 : hq / group_heads) * d * d;
    for (int j = 0; j < d; ++j) {
      double y = 0.0;
      for (int i = 0; i < d; ++i) y += (matrices > 0 ? r[std::size_t(j) * d + std::size_t(i)] : (i == j ? 1.0 : 0.0)) * o[std::size_t(i)];
      want[std::size_t(hq) * d + std::size_t(j)] = y;
    }
  }
  for (int parallel = 0; parallel < 2; ++parallel) {
    std::vector<float> out(want.size(), NAN);
    p.out = out.data();
    if (parallel) {
      cuda_emulation::launch({unsigned(query_heads), 1, 1}, detail::merge::kMergeThreads,
                             [&] { detail::merge::decode_merge_parallel_kernel(p, splits); });
    } else {
      cuda_emulation::launch({unsigned(query_heads), 1, 1}, detail::kMaxHeadDim,
                             [&] { detail::merge::decode_merge_kernel(p, splits); });
    }
    double worst = 0.0, biggest = 0.0;
    for (std::size_t i = 0; i < want.size(); ++i) {
      ASSERT_TRUE(std::isfinite(out[i])) << (parallel ? "parallel" : "serial") << " merge, element " << i;
      worst = std::max(worst, std::fabs(double(out[i]) - want[i]));
      biggest = std::max(biggest, std::fabs(want[i]));
    }
    EXPECT_LE(worst, 1e-5 * biggest) << (parallel ? "parallel" : "serial") << " merge, d " << d << ", " << splits
                                     << " splits: max |kernel − formula| " << worst << ", max " << biggest;
  }
}

TEST(DecodeMergeEmulated, BothMergesEqualTheFormula) {
  check_merges(128, 2, 3, 37, 1, 11u);
  check_merges(64, 1, 2, 5, 0, 12u);
  check_merges(256, 2, 1, 3, 2, 13u);
}

TEST(DecodeMergeEmulated, MoreSplitsThanOneWeightTile) {
  check_merges(128, 1, 2, detail::merge::kMergeTile + 300, 1, 14u);
}

}  // namespace
}  // namespace oscar::runtime
