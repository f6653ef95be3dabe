// The CPU fp16/bf16 conversions round to nearest even and round-trip every 16-bit value.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>

#include "bnb/float16.h"

using namespace bnb;

TEST(Float16, EveryHalfRoundTrips) {
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const float f = fp16_to_float(uint16_t(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(float_to_fp16(f), h) << "half bits " << h;
  }
}

TEST(Float16, EveryBFloat16RoundTrips) {
  for (uint32_t h = 0; h < 0x10000u; ++h) {
    const float f = bf16_to_float(uint16_t(h));
    if (std::isnan(f)) continue;
    EXPECT_EQ(float_to_bf16(f), h) << "bf16 bits " << h;
  }
}

TEST(Float16, RoundsToNearestEven) {
  // 1 + 2^-11 lies halfway between two halves (1 and 1 + 2^-10): ties go to the even one, 1.
  EXPECT_EQ(float_to_fp16(1.0f + std::ldexp(1.0f, -11)), 0x3c00);
  EXPECT_EQ(float_to_fp16(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);
  EXPECT_EQ(float_to_fp16(65520.0f), 0x7c00);  // overflows to inf
  EXPECT_EQ(float_to_fp16(65504.0f), 0x7bff);  // the largest half
  EXPECT_EQ(float_to_fp16(std::ldexp(1.0f, -24)), 0x0001);  // the smallest subnormal
  EXPECT_EQ(float_to_bf16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);
  EXPECT_EQ(float_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);
}
