// The CPU quantile estimator against exact order statistics from std::nth_element: the
// estimate must lie in the same final bin (21-bit key prefix) as the exact order statistic,
// and equal it when that bin holds a single distinct value (ties, 16-bit inputs).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "bnb/float16.h"
#include "bnb/quantiles.h"
#include "bnb/quantiles_cpu.h"

namespace {

namespace q = bnb::quantiles;

// Key order, restated here from its definition (sign-magnitude to two's-complement order).
uint32_t key_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return (u >> 31) ? ~u : (u | 0x80000000u);
}

float exact_order_statistic(std::vector<float> v, int64_t rank) {
  std::nth_element(v.begin(), v.begin() + rank, v.end());
  return v[rank];
}

int64_t wanted_rank(int64_t n, double offset, int num_quantiles, int j) {
  const double p = num_quantiles > 1 ? offset + j * (1.0 - 2.0 * offset) / (num_quantiles - 1) : offset;
  return std::min<int64_t>(n - 1, int64_t(std::floor(p * double(n - 1) + 1e-6)));
}

class QuantilesFloat : public ::testing::TestWithParam<std::tuple<int64_t, int>> {};

TEST_P(QuantilesFloat, SameFinalBinAsExact) {
  const auto [n, num_quantiles] = GetParam();
  std::mt19937 rng(77 + n + num_quantiles);
  std::normal_distribution<float> normal(1.f, 4.f);
  std::vector<float> a(n);
  for (auto& v : a) v = normal(rng);
  std::vector<float> out(num_quantiles);
  const double offset = 1.0 / 512;
  bnb::cpu::estimate_quantiles(bnb::DType::Float32, a.data(), n, offset, num_quantiles, out.data());
  for (int j = 0; j < num_quantiles; ++j) {
    const float exact = exact_order_statistic(a, wanted_rank(n, offset, num_quantiles, j));
    EXPECT_EQ(key_of(out[j]) >> q::kFinalShift, key_of(exact) >> q::kFinalShift)
        << "quantile " << j << ": " << out[j] << " vs " << exact;
  }
}

INSTANTIATE_TEST_SUITE_P(Sizes, QuantilesFloat,
                         ::testing::Combine(::testing::Values<int64_t>(256, 999, 70001),
                                            ::testing::Values(1, 17, 256)));

TEST(Quantiles, TiesAreExact) {
  const std::vector<float> values = {-7.5f, -0.3f, 0.f, 0.1f, 3.25f};
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> pick(0, 4);
  std::vector<float> a(5003);
  for (auto& v : a) v = values[pick(rng)];
  std::vector<float> out(256);
  bnb::cpu::estimate_quantiles(bnb::DType::Float32, a.data(), int64_t(a.size()), 0.01, 256, out.data());
  for (int j = 0; j < 256; ++j)
    EXPECT_EQ(out[j], exact_order_statistic(a, wanted_rank(int64_t(a.size()), 0.01, 256, j))) << j;
}

TEST(Quantiles, Float16IsExact) {
  std::mt19937 rng(9);
  std::normal_distribution<float> normal(0.f, 2.f);
  std::vector<uint16_t> h(40000);
  std::vector<float> f(h.size());
  for (size_t i = 0; i < h.size(); ++i) {
    h[i] = bnb::float_to_fp16(normal(rng));
    f[i] = bnb::fp16_to_float(h[i]);
  }
  std::vector<float> out(256);
  bnb::cpu::estimate_quantiles(bnb::DType::Float16, h.data(), int64_t(h.size()), 1.0 / 512, 256, out.data());
  for (int j = 0; j < 256; ++j)
    EXPECT_EQ(out[j], exact_order_statistic(f, wanted_rank(int64_t(f.size()), 1.0 / 512, 256, j))) << j;
}

TEST(Quantiles, KeysOrderLikeValues) {
  const std::vector<float> sorted = {-INFINITY, -3e38f, -1.f, -1e-38f, -1e-45f, -0.f, 0.f, 1e-45f, 2.f, 3e38f,
                                     INFINITY};
  for (size_t i = 1; i < sorted.size(); ++i) {
    EXPECT_LT(q::order_key(sorted[i - 1]), q::order_key(sorted[i])) << i;
    EXPECT_EQ(q::key_value(q::order_key(sorted[i])), sorted[i]);
  }
  EXPECT_EQ(q::order_key(NAN), 0xffffffffu);  // NaN sorts last
}

}  // namespace
