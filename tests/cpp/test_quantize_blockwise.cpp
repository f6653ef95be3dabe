// The CPU block-wise kernels against a direct implementation of the definition: absmax per
// block, nearest code by exhaustive search, dequantize as code * absmax.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "bnb/quantize_cpu.h"

namespace {

std::vector<float> sorted_code(std::mt19937& rng) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> code(256);
  for (auto& c : code) c = u(rng);
  code[0] = -1.f;
  code[255] = 1.f;
  std::sort(code.begin(), code.end());
  return code;
}

int nearest_exhaustive(const std::vector<float>& code, float x) {
  int best = 0;
  for (int i = 1; i < 256; ++i)
    if (std::fabs(code[i] - x) < std::fabs(code[best] - x)) best = i;
  return best;
}

class Blockwise : public ::testing::TestWithParam<std::tuple<int64_t, int64_t>> {};

TEST_P(Blockwise, MatchesDefinition) {
  const auto [n, blocksize] = GetParam();
  std::mt19937 rng(1234 + n + blocksize);
  std::normal_distribution<float> normal(0.f, 3.f);
  std::vector<float> a(n);
  for (auto& v : a) v = normal(rng);
  const auto code = sorted_code(rng);
  const int64_t blocks = bnb::num_blocks(n, blocksize);
  std::vector<uint8_t> q(n);
  std::vector<float> absmax(blocks), back(n);
  bnb::cpu::quantize_blockwise(bnb::DType::Float32, a.data(), code.data(), q.data(), absmax.data(), n, blocksize);
  bnb::cpu::dequantize_blockwise(bnb::DType::Float32, q.data(), code.data(), absmax.data(), back.data(), n, blocksize);
  int64_t mismatches = 0;
  for (int64_t b = 0; b < blocks; ++b) {
    float m = 0.f;
    for (int64_t i = b * blocksize; i < std::min(n, (b + 1) * blocksize); ++i) m = std::max(m, std::fabs(a[i]));
    ASSERT_EQ(absmax[b], m) << "block " << b;
    for (int64_t i = b * blocksize; i < std::min(n, (b + 1) * blocksize); ++i) {
      const float x = a[i] / m;
      const int want = nearest_exhaustive(code, x);
      if (q[i] != want) {
        // Only a tie (x halfway between two codes, up to rounding) may pick the other one.
        ++mismatches;
        ASSERT_NEAR(std::fabs(code[q[i]] - x), std::fabs(code[want] - x), 1e-6f) << "element " << i;
      }
      ASSERT_EQ(back[i], code[q[i]] * m);
    }
  }
  EXPECT_LE(mismatches, n / 1000 + 1);
}

INSTANTIATE_TEST_SUITE_P(Sizes, Blockwise,
                         ::testing::Combine(::testing::Values(1, 63, 4096, 10007),
                                            ::testing::Values(64, 256, 4096)));

TEST(Blockwise, ZeroBlockDequantizesToZero) {
  std::vector<float> code(256);
  for (int i = 0; i < 256; ++i) code[i] = -1.f + 2.f * i / 255.f;
  code[127] = 0.f;
  std::sort(code.begin(), code.end());
  std::vector<float> a(64, 0.f), back(64);
  std::vector<uint8_t> q(64);
  float absmax = -1.f;
  bnb::cpu::quantize_blockwise(bnb::DType::Float32, a.data(), code.data(), q.data(), &absmax, 64, 64);
  bnb::cpu::dequantize_blockwise(bnb::DType::Float32, q.data(), code.data(), &absmax, back.data(), 64, 64);
  EXPECT_EQ(absmax, 0.f);
  for (float v : back) EXPECT_EQ(v, 0.f);
}

}  // namespace

// Map sizes and block sizes are settings of a code format, not global rules.
TEST(QuantFormat, MapSizeAndBlockSizesPerFormat) {
  static_assert(bnb::kFormat8bit.map_size == 1 << bnb::kFormat8bit.bits, "an 8-bit map has 2^8 entries");
  static_assert(bnb::kFormat4bit.map_size == 1 << bnb::kFormat4bit.bits, "a 4-bit map has 2^4 entries");
  static_assert(bnb::kCodeSize == bnb::kFormat8bit.map_size, "the 8-bit kernels read the 8-bit map");
  for (int64_t b : {64, 128, 256, 512, 1024, 2048, 4096}) {
    EXPECT_TRUE(bnb::is_supported_blocksize(bnb::kFormat8bit, b)) << b;
    EXPECT_TRUE(bnb::is_supported_blocksize(bnb::kFormat4bit, b)) << b;
  }
  EXPECT_FALSE(bnb::is_supported_blocksize(bnb::kFormat8bit, 32));
  EXPECT_TRUE(bnb::is_supported_blocksize(bnb::kFormat4bit, 32));
  for (int64_t b : {0, -64, 16, 96, 100, 8192}) {
    EXPECT_FALSE(bnb::is_supported_blocksize(bnb::kFormat8bit, b)) << b;
    EXPECT_FALSE(bnb::is_supported_blocksize(bnb::kFormat4bit, b)) << b;
  }
  EXPECT_EQ(bnb::is_supported_blocksize(96), bnb::is_supported_blocksize(bnb::kFormat8bit, 96));
}
