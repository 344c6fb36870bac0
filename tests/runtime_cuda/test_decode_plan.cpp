// The tensor-core decode's split sizing (decode_plan.h): every token in exactly one split, chunks the kernel
// takes, and one wave of the device's resident blocks whenever the cache is long enough to fill it.
#include "runtime/cuda/decode_plan.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <stdexcept>
#include <vector>

#include "runtime/cuda/kernels.h"

namespace oscar::runtime {
namespace {

namespace detail = gpu::detail;

/// Invariants of a plan for the segment lengths and the grid; `fills_wave`: the INT2 chunks are not at their
/// minimum, so the plan must use the whole wave.
void check_plan(std::int64_t int2_tokens, std::int64_t fp_tokens, int blocks_per_split, int resident_blocks) {
  SCOPED_TRACE(testing::Message() << int2_tokens << " INT2 + " << fp_tokens << " bf16 tokens, " << blocks_per_split
                                  << " blocks per split, " << resident_blocks << " resident");
  const detail::DecodeSplitPlan plan =
      detail::plan_decode_splits(int2_tokens, fp_tokens, blocks_per_split, resident_blocks);
  // Coverage: the last split of each segment holds at least one token, and together they hold all.
  EXPECT_GT(plan.fp_chunk, 0);
  EXPECT_EQ(plan.fp_splits, (fp_tokens + plan.fp_chunk - 1) / plan.fp_chunk);
  if (int2_tokens == 0) {
    EXPECT_EQ(plan.int2_splits, 0);
    const int wave = std::max(1, resident_blocks / blocks_per_split);
    if (plan.fp_chunk > detail::kMinFpChunk) {
      EXPECT_LE(plan.fp_splits, wave);
    }
    return;
  }
  ASSERT_GT(plan.int2_splits, 0);
  EXPECT_LT(std::int64_t(plan.int2_splits - 1) * plan.int2_chunk, int2_tokens);
  EXPECT_GE(std::int64_t(plan.int2_splits) * plan.int2_chunk, int2_tokens);
  EXPECT_EQ(plan.int2_chunk % detail::mma::kTileTokens, 0) << "chunk " << plan.int2_chunk;
  EXPECT_GE(plan.int2_chunk, detail::kMinInt2Chunk);
  const std::int64_t wave_splits = resident_blocks / blocks_per_split;
  // The bf16 splits: 128 tokens, or fewer and longer ones when 128-token ones would take over a quarter of
  // the wave.
  EXPECT_GE(plan.fp_chunk, detail::kMinFpChunk);
  if (plan.fp_chunk > detail::kMinFpChunk) {
    EXPECT_LE(plan.fp_splits, std::max<std::int64_t>(1, wave_splits / 4));
  }
  const std::int64_t splits = plan.int2_splits + plan.fp_splits;
  if (wave_splits > plan.fp_splits) {
    EXPECT_LE(splits, wave_splits) << "more than one wave";
    // Not at the minimum chunk: the wave is used, up to the rounding of the chunk to whole tiles.
    if (plan.int2_chunk > detail::kMinInt2Chunk) {
      const std::int64_t budget = wave_splits - plan.fp_splits;
      EXPECT_GE(plan.int2_splits * (plan.int2_chunk + 16), int2_tokens);
      EXPECT_GE(double(plan.int2_splits), 0.9 * double(budget) - 1.0)
          << "chunk " << plan.int2_chunk << " leaves the wave part empty";
    }
  }
}

TEST(DecodePlan, H200At128KIsOneWave) {
  // Hq 32, Hkv 8, d 128: one head launch, 3 blocks of the mixed kernel per SM, 132 SMs; S0 64 + W 256.
  const detail::DecodeSplitPlan plan = detail::plan_decode_splits(131072 - 320, 320, 8, 3 * 132);
  EXPECT_EQ(plan.fp_chunk, 128);
  EXPECT_EQ(plan.fp_splits, 3);
  // 396 / 8 = 49 splits in the wave, 3 of them bf16: ⌈130752 / 46⌉ = 2843 tokens, rounded up to whole tiles 2848,
  // which makes ⌈130752 / 2848⌉ = 46 INT2 splits: 49 × 8 = 392 blocks.
  EXPECT_EQ(plan.int2_chunk, 2848);
  EXPECT_EQ(plan.int2_splits, 46);
  check_plan(131072 - 320, 320, 8, 3 * 132);
}

// A long window with many KV heads (Hkv 32, S0 64 + W 4096) still leaves the INT2 segment most of the wave.
TEST(DecodePlan, LongWindowKeepsTheInt2SegmentSplit) {
  const detail::DecodeSplitPlan plan = detail::plan_decode_splits(131072 - 4160, 4160, 32, 3 * 132);
  // 396 / 32 = 12 splits in the wave: 3 bf16 (⌈4160 / 3⌉ = 1387 tokens each), 9 INT2.
  EXPECT_EQ(plan.fp_splits, 3);
  EXPECT_EQ(plan.int2_splits, 9);
  check_plan(131072 - 4160, 4160, 32, 3 * 132);
}

TEST(DecodePlan, InvariantsOverRandomGeometries) {
  std::mt19937 rng(5);
  std::uniform_int_distribution<std::int64_t> tokens(0, 300000);
  std::uniform_int_distribution<int> window(0, 600), long_window(0, 20000), heads(1, 64), resident(1, 2000);
  for (int i = 0; i < 2000; ++i) {
    const std::int64_t fp = i % 3 == 0 ? long_window(rng) : window(rng);
    const std::int64_t int2 = i % 5 == 0 ? 0 : tokens(rng) >> (i % 9);
    if (int2 + fp == 0) continue;
    check_plan(int2, fp, heads(rng), resident(rng));
  }
}

// The page walk's division (FastDivider) against integer division: every divisor from 2 to 4,096 and large ones, on
// dividends at and around multiples of the divisor, random ones and the largest allowed, 2^31 − 1.
TEST(DecodePlan, FastDividerEqualsIntegerDivision) {
  std::mt19937 rng(9);
  std::uniform_int_distribution<std::uint32_t> dividend(0, std::uint32_t(detail::kFastDividerLimit - 1));
  std::vector<std::uint32_t> divisors;
  for (std::uint32_t d = 2; d <= 4096; ++d) divisors.push_back(d);
  for (std::uint32_t d : {65535u, 65536u, 65537u, 1000003u, (1u << 30) - 1, 1u << 30, (1u << 31) - 1}) {
    divisors.push_back(d);
  }
  int wrong = 0;
  for (std::uint32_t d : divisors) {
    const detail::FastDivider f = detail::FastDivider::make(d);
    std::vector<std::uint32_t> ns = {0, 1, d - 1, d, d + 1, 2 * d - 1, std::uint32_t(detail::kFastDividerLimit - 1)};
    const std::uint32_t top = std::uint32_t((detail::kFastDividerLimit - 1) / d) * d;  // the largest multiple
    ns.insert(ns.end(), {top - 1, top, top + 1 > top ? top + 1 : top});
    for (int i = 0; i < 64; ++i) ns.push_back(dividend(rng));
    for (std::uint32_t n : ns) {
      if (n >= detail::kFastDividerLimit) continue;
      const std::uint32_t q = f.quotient(n);
      if (q != n / d || f.remainder(n, q) != n % d) {
        if (++wrong < 5) ADD_FAILURE() << n << " / " << d << ": " << q << " rem " << f.remainder(n, q);
      }
    }
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_THROW(detail::FastDivider::make(0), std::invalid_argument);
  EXPECT_THROW(detail::FastDivider::make(1), std::invalid_argument);
}

TEST(DecodePlan, HeadLaunchesCoverEveryGroup) {
  EXPECT_EQ(detail::decode_head_launches(1), 1);
  EXPECT_EQ(detail::decode_head_launches(8), 1);
  EXPECT_EQ(detail::decode_head_launches(9), 2);
  EXPECT_EQ(detail::decode_head_launches(16), 2);
  EXPECT_EQ(detail::decode_head_launches(17), 3);
}

}  // namespace
}  // namespace oscar::runtime
