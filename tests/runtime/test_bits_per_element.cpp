// The bits-per-element table against the numbers the reference doc publishes.
#include <gtest/gtest.h>

#include <cmath>

#include "runtime/bits_per_element.h"

using namespace oscar::runtime;

TEST(BitsPerElement, MatchesThePublishedFigures) {
  Int2Config fp16_scales;
  fp16_scales.scale_type = ScaleType::kFloat16;
  Int2Config fp32_scales;
  EXPECT_DOUBLE_EQ(int2_bits_per_element(fp16_scales), 2.25);
  EXPECT_DOUBLE_EQ(int2_bits_per_element(fp32_scales), 2.5);
  const CacheLayout layout;  // sink 64, recent 256, 16-bit
  EXPECT_NEAR(cache_bits_per_element(131072, layout, fp16_scales), 2.28, 0.005);
  EXPECT_NEAR(cache_bits_per_element(131072, layout, fp32_scales), 2.53, 0.005);
  // Formula, written out: (320·16 + (L − 320)·2.25) / L.
  EXPECT_DOUBLE_EQ(cache_bits_per_element(131072, layout, fp16_scales), (320 * 16 + (131072 - 320) * 2.25) / 131072);
  EXPECT_DOUBLE_EQ(cache_bits_per_element(100, layout, fp16_scales), 16.0);  // all full precision
}

TEST(BitsPerElement, SmallerGroupsCostMoreScaleBits) {
  Int2Config group32;
  group32.group_size = 32;
  group32.scale_type = ScaleType::kFloat16;
  EXPECT_DOUBLE_EQ(int2_bits_per_element(group32), 3.0);
}
