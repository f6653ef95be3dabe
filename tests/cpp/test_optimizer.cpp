// The CPU optimizer kernels against the published update rules computed in double.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "bnb/optimizer_cpu.h"

namespace {

bnb::OptimizerHyper adam_hyper(int step, float lr, float b1, float b2, float eps, float wd) {
  bnb::OptimizerHyper h{};
  h.algorithm = bnb::Algorithm::Adam;
  h.lr = lr;
  h.beta1 = b1;
  h.beta2 = b2;
  h.eps = eps;
  h.weight_decay = wd;
  h.decoupled = true;
  h.inv_bias_correction1 = float(1.0 / (1.0 - std::pow(double(b1), step)));
  h.inv_bias_correction2_sqrt = float(1.0 / std::sqrt(1.0 - std::pow(double(b2), step)));
  h.first_step = step == 1;
  h.block_wise = true;
  return h;
}

TEST(Optimizer32bit, AdamWMatchesDoubleReference) {
  const int64_t n = 1001;
  std::mt19937 rng(7);
  std::normal_distribution<float> N(0.f, 1.f);
  std::vector<float> p(n), m(n, 0.f), v(n, 0.f), g(n), stats(bnb::kStats, 0.f);
  std::vector<double> rp(n), rm(n, 0.0), rv(n, 0.0);
  for (int64_t i = 0; i < n; ++i) rp[i] = p[i] = N(rng);
  for (int step = 1; step <= 5; ++step) {
    for (auto& x : g) x = N(rng);
    const auto h = adam_hyper(step, 1e-2f, 0.9f, 0.99f, 1e-8f, 0.1f);
    bnb::TensorSlot s{p.data(), g.data(), m.data(), v.data(), nullptr, nullptr, nullptr, stats.data(), n};
    bnb::cpu::optimizer_update_32bit(bnb::DType::Float32, h, &s, 1);
    for (int64_t i = 0; i < n; ++i) {
      rm[i] = 0.9 * rm[i] + 0.1 * g[i];
      rv[i] = 0.99 * rv[i] + 0.01 * double(g[i]) * g[i];
      const double u = (rm[i] / (1 - std::pow(0.9, step))) / (std::sqrt(rv[i] / (1 - std::pow(0.99, step))) + 1e-8);
      rp[i] = rp[i] * (1 - 1e-2 * 0.1) - 1e-2 * u;
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_NEAR(p[i], rp[i], 1e-5) << i;
    EXPECT_NEAR(m[i], rm[i], 1e-5) << i;
  }
}

TEST(Optimizer8bit, MomentumBlockAbsmaxIsNewStateMax) {
  const int64_t n = 700;  // two full blocks and a partial one
  std::vector<float> code(256);
  for (int i = 0; i < 256; ++i) code[i] = -1.f + 2.f * i / 255.f;  // linear signed map
  std::mt19937 rng(3);
  std::normal_distribution<float> N(0.f, 1.f);
  std::vector<float> p(n), g(n), absmax(3, 0.f), stats(bnb::kStats, 0.f);
  std::vector<uint8_t> q(n, 0);
  for (auto& x : p) x = N(rng);
  for (int step = 1; step <= 3; ++step) {
    for (auto& x : g) x = N(rng);
    std::vector<double> want(n);
    for (int64_t i = 0; i < n; ++i) {
      const double old = double(code[q[i]]) * absmax[i / 256];
      want[i] = step == 1 ? g[i] : 0.9 * old + g[i];
    }
    bnb::OptimizerHyper h{};
    h.algorithm = bnb::Algorithm::Momentum;
    h.lr = 0.1f;
    h.beta1 = 0.9f;
    h.inv_bias_correction1 = h.inv_bias_correction2_sqrt = 1.f;
    h.first_step = step == 1;
    h.block_wise = true;
    bnb::TensorSlot s{p.data(), g.data(), q.data(), nullptr, absmax.data(), nullptr, nullptr, stats.data(), n};
    bnb::cpu::optimizer_update_8bit(bnb::DType::Float32, h, &s, 1, code.data(), nullptr);
    for (int64_t b = 0; b < 3; ++b) {
      double m = 0.0;
      for (int64_t i = b * 256; i < std::min<int64_t>(n, (b + 1) * 256); ++i) m = std::max(m, std::fabs(want[i]));
      EXPECT_NEAR(absmax[b], m, 1e-5 * m) << "block " << b;
      for (int64_t i = b * 256; i < std::min<int64_t>(n, (b + 1) * 256); ++i)
        EXPECT_NEAR(code[q[i]] * absmax[b], want[i], absmax[b] / 255.0 + 1e-6) << i;  // half a code step
    }
  }
}

}  // namespace
