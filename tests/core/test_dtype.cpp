// dtype conversions against IEEE-754 facts (not against our own output).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "core/dtype.h"

using namespace oscar;

TEST(Float16, KnownEncodings) {
  EXPECT_EQ(float_to_float16(1.0f), 0x3c00);
  EXPECT_EQ(float_to_float16(-2.0f), 0xc000);
  EXPECT_EQ(float_to_float16(65504.0f), 0x7bff);            // largest finite half
  EXPECT_EQ(float_to_float16(70000.0f), 0x7c00);            // overflow -> +inf
  EXPECT_EQ(float_to_float16(std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(float_to_float16(std::ldexp(1.0f, -14)), 0x0400);  // smallest normal
  EXPECT_EQ(float_to_float16(0.1f), 0x2e66);
  EXPECT_EQ(float16_to_float(0x3555), 0.333251953125f);
  EXPECT_TRUE(std::isnan(float16_to_float(float_to_float16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST(Float16, RoundTripsEveryFiniteHalf) {
  for (std::uint32_t bits = 0; bits < 0x10000; ++bits) {
    const std::uint16_t h = std::uint16_t(bits);
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) continue;  // NaN payloads need not survive
    ASSERT_EQ(float_to_float16(float16_to_float(h)), h) << std::hex << bits;
  }
}

TEST(Float16, RoundsHalfToEven) {
  // 1 + 2^-11 lies exactly between 1 and 1 + 2^-10: ties go to the even mantissa (1.0).
  EXPECT_EQ(float_to_float16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(float_to_float16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
}

TEST(BFloat16, KnownEncodings) {
  EXPECT_EQ(float_to_bfloat16(1.0f), 0x3f80);
  EXPECT_EQ(float_to_bfloat16(-3.0f), 0xc040);
  EXPECT_FLOAT_EQ(bfloat16_to_float(0x4049), 3.140625f);
  EXPECT_EQ(float_to_bfloat16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);  // tie -> even
  EXPECT_EQ(float_to_bfloat16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
}
