// The CPU LLM.int8() kernels against direct implementations of their definitions.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "bnb/int8_cpu.h"
#include "bnb/nonfinite.h"

namespace {

TEST(Int8, RowQuantWithOutliers) {
  const int64_t rows = 37, cols = 131;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.f, 2.f);
  std::vector<float> a(rows * cols);
  for (auto& v : a) v = normal(rng);
  a[5 * cols + 17] = 40.f;   // outlier columns 17 and 99 (a value at the threshold is one)
  a[30 * cols + 99] = -8.f;
  a[31 * cols + 50] = std::nextafter(8.f, 0.f);  // just below: a regular value
  const float threshold = 8.f;
  std::vector<int8_t> q(rows * cols);
  std::vector<float> stats(rows);
  bool flags[cols];
  bnb::cpu::int8_vectorwise_quant(bnb::DType::Float32, a.data(), rows, cols, threshold, q.data(), stats.data(), flags);
  for (int64_t c = 0; c < cols; ++c) EXPECT_EQ(flags[c], c == 17 || c == 99) << c;
  for (int64_t r = 0; r < rows; ++r) {
    float amax = 0.f;
    for (int64_t c = 0; c < cols; ++c)
      if (std::fabs(a[r * cols + c]) < threshold) amax = std::max(amax, std::fabs(a[r * cols + c]));
    ASSERT_EQ(stats[r], amax);
    for (int64_t c = 0; c < cols; ++c) {
      const int want = (c == 17 || c == 99) ? 0 : int(std::nearbyint(a[r * cols + c] * (127.f * (1.f / amax))));
      ASSERT_EQ(int(q[r * cols + c]), want) << r << "," << c;
    }
  }
}

// The column absmax merge (what the CUDA column statistics merge partial maxima of row ranges
// with, by atomics, in any order): every order and every split into partial merges of up to
// four magnitudes gives the rule's value: NaN for a NaN or two Infs, else the largest.
TEST(Int8, AbsmaxMergeIsOrderFree) {
  const float kinds[] = {0.f, 1.5f, 3.f, INFINITY, NAN};
  const auto rule = [](const std::vector<float>& v) {
    int infs = 0;
    float m = 0.f;
    for (float x : v) {
      if (std::isnan(x)) return NAN;
      infs += std::isinf(x);
      m = std::max(m, x);
    }
    return infs >= 2 ? NAN : m;
  };
  const auto same = [](float a, float b) { return std::isnan(a) ? std::isnan(b) : a == b; };
  int64_t checked = 0;
  for (int size = 1; size <= 4; ++size) {
    std::vector<int> idx(size, 0);
    while (true) {
      std::vector<float> v;
      for (int i : idx) v.push_back(kinds[i]);
      const float want = rule(v);
      std::vector<int> order(size);
      for (int i = 0; i < size; ++i) order[i] = i;
      do {
        for (int split = 0; split <= size; ++split) {  // two partial merges of an order, then one
          float a = 0.f, b = 0.f;
          for (int i = 0; i < split; ++i) a = bnb::int8_absmax_merge(a, v[order[i]]);
          for (int i = split; i < size; ++i) b = bnb::int8_absmax_merge(b, v[order[i]]);
          EXPECT_TRUE(same(bnb::int8_absmax_merge(a, b), want)) << "split " << split;
          EXPECT_TRUE(same(bnb::int8_absmax_merge(b, a), want)) << "split " << split;
          ++checked;
        }
      } while (std::next_permutation(order.begin(), order.end()));
      int k = 0;  // the next multiset, as digits in base 5
      while (k < size && ++idx[k] == 5) idx[k++] = 0;
      if (k == size) break;
    }
  }
  EXPECT_GT(checked, 50000);
}

TEST(Int8, GemmIsExact) {
  const int64_t M = 19, N = 70, K = 1027;
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> u(-127, 127);
  std::vector<int8_t> A(M * K), B(N * K);
  for (auto& v : A) v = int8_t(u(rng));
  for (auto& v : B) v = int8_t(u(rng));
  std::vector<int32_t> C(M * N);
  bnb::cpu::int8_linear_matmul(A.data(), B.data(), C.data(), M, N, K);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      int64_t s = 0;
      for (int64_t k = 0; k < K; ++k) s += int64_t(A[m * K + k]) * B[n * K + k];
      ASSERT_EQ(C[m * N + n], s);
    }
}

TEST(Int8, MmDequantWithBiasAndOutliers) {
  const int64_t M = 3, N = 5, k = 2;
  std::vector<int32_t> C = {1000, -2000, 3, 0, 127 * 127, 5, 6, 7, 8, 9, -1, -2, -3, -4, -5};
  std::vector<float> rs = {1.f, 2.f, 0.5f}, cs = {1.f, 0.25f, 2.f, 3.f, 1.f};
  std::vector<float> bias = {0.5f, -1.f, 0.f, 2.f, 1.f};
  std::vector<float> sa = {1.f, 2.f, 0.f, -1.f, 3.f, 0.5f}, sb = {1.f, 1.f, 0.f, 2.f, -1.f, 0.f, 4.f, 1.f, 0.f, 0.f};
  std::vector<float> out(M * N);
  bnb::cpu::int8_mm_dequant(bnb::DType::Float32, C.data(), rs.data(), cs.data(), bias.data(), sa.data(), sb.data(), k,
                            M, N, out.data());
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double want = double(C[m * N + n]) * rs[m] * cs[n] / (127.0 * 127.0) + bias[n];
      for (int64_t j = 0; j < k; ++j) want += double(sa[m * k + j]) * sb[n * k + j];
      EXPECT_NEAR(out[m * N + n], want, 1e-5 * (1 + std::fabs(want)));
    }
}

}  // namespace
