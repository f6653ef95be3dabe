// The CPU optimizer kernels against the published update rules computed in double.
#include <gtest/gtest.h>

#include <algorithm>
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

bnb::OptimizerHyper ademamix_hyper(int step, float beta3, float alpha) {
  bnb::OptimizerHyper h = adam_hyper(step, 1e-2f, 0.9f, 0.99f, 1e-8f, 0.1f);
  h.algorithm = bnb::Algorithm::AdEMAMix;
  h.beta3 = beta3;
  h.alpha = alpha;
  return h;
}

// The published AdEMAMix step in double for one element; m2 is the slow EMA.
void ademamix_reference(int step, double beta3, double alpha, double g, double& p, double& m1, double& m2,
                        double& nu) {
  m1 = 0.9 * m1 + 0.1 * g;
  m2 = beta3 * m2 + (1 - beta3) * g;
  nu = 0.99 * nu + 0.01 * g * g;
  const double u = (m1 / (1 - std::pow(0.9, step)) + alpha * m2) / (std::sqrt(nu / (1 - std::pow(0.99, step))) + 1e-8);
  p = p * (1 - 1e-2 * 0.1) - 1e-2 * u;
}

// state1 holds the fast EMA and then the slow one (state3 points at its second half).
TEST(Optimizer32bit, AdEMAMixMatchesDoubleReference) {
  const int64_t n = 1001;
  std::mt19937 rng(11);
  std::normal_distribution<float> N(0.f, 1.f);
  std::vector<float> p(n), m(2 * n, 0.f), v(n, 0.f), g(n), stats(bnb::kStats, 0.f);
  std::vector<double> rp(n), rm1(n, 0.0), rm2(n, 0.0), rv(n, 0.0);
  for (int64_t i = 0; i < n; ++i) rp[i] = p[i] = N(rng);
  for (int step = 1; step <= 6; ++step) {
    for (auto& x : g) x = N(rng);
    const float beta3 = 0.95f + 0.005f * step, alpha = 0.5f * step;  // as if scheduled
    bnb::TensorSlot s{p.data(), g.data(), m.data(), v.data(), nullptr, nullptr, nullptr, stats.data(), n};
    s.state3 = m.data() + n;
    bnb::cpu::optimizer_update_32bit(bnb::DType::Float32, ademamix_hyper(step, beta3, alpha), &s, 1);
    for (int64_t i = 0; i < n; ++i) ademamix_reference(step, beta3, alpha, g[i], rp[i], rm1[i], rm2[i], rv[i]);
  }
  for (int64_t i = 0; i < n; ++i) {
    EXPECT_NEAR(p[i], rp[i], 1e-5) << i;
    EXPECT_NEAR(m[i], rm1[i], 1e-5) << i;
    EXPECT_NEAR(m[n + i], rm2[i], 1e-5) << i;
    EXPECT_NEAR(v[i], rv[i], 1e-5) << i;
  }
}

// 8-bit: each of the three states gets its own block absmax (the slow EMA's in the second half
// of absmax1) and codes within half a step of its exact new value.
TEST(Optimizer8bit, AdEMAMixThreeStatesBlockwise) {
  const int64_t n = 600, blocks = 3;
  std::vector<float> code(256), ucode(256);
  for (int i = 0; i < 256; ++i) {
    code[i] = -1.f + 2.f * i / 255.f;
    ucode[i] = i / 255.f;
  }
  std::mt19937 rng(5);
  std::normal_distribution<float> N(0.f, 1.f);
  std::vector<float> p(n), g(n), absmax1(2 * blocks, 0.f), absmax2(blocks, 0.f), stats(bnb::kStats, 0.f);
  std::vector<uint8_t> q1(2 * n, 127), q2(n, 0);
  for (auto& x : p) x = N(rng);
  for (int step = 1; step <= 3; ++step) {
    for (auto& x : g) x = N(rng);
    std::vector<double> w1(n), w2(n), w3(n), wp(n);
    for (int64_t i = 0; i < n; ++i) {
      double m1 = double(code[q1[i]]) * absmax1[i / 256], m2 = double(code[q1[n + i]]) * absmax1[blocks + i / 256];
      double nu = double(ucode[q2[i]]) * absmax2[i / 256], pv = p[i];
      ademamix_reference(step, 0.99, 2.0, g[i], pv, m1, m2, nu);
      w1[i] = m1, w2[i] = nu, w3[i] = m2, wp[i] = pv;
    }
    bnb::TensorSlot s{p.data(), g.data(), q1.data(), q2.data(), absmax1.data(), absmax2.data(), nullptr, stats.data(),
                      n};
    s.state3 = q1.data() + n;
    s.absmax3 = absmax1.data() + blocks;
    bnb::cpu::optimizer_update_8bit(bnb::DType::Float32, ademamix_hyper(step, 0.99f, 2.f), &s, 1, code.data(),
                                    ucode.data());
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t lo = b * 256, hi = std::min<int64_t>(n, lo + 256);
      double a1 = 0, a2 = 0, a3 = 0;
      for (int64_t i = lo; i < hi; ++i) {
        a1 = std::max(a1, std::fabs(w1[i]));
        a2 = std::max(a2, std::fabs(w2[i]));
        a3 = std::max(a3, std::fabs(w3[i]));
      }
      EXPECT_NEAR(absmax1[b], a1, 1e-5 * a1) << "block " << b;
      EXPECT_NEAR(absmax2[b], a2, 1e-5 * a2) << "block " << b;
      EXPECT_NEAR(absmax1[blocks + b], a3, 1e-5 * a3) << "block " << b;
      for (int64_t i = lo; i < hi; ++i) {
        EXPECT_NEAR(p[i], wp[i], 1e-5) << i;
        EXPECT_NEAR(code[q1[i]] * absmax1[b], w1[i], absmax1[b] / 255.0 + 1e-6) << i;
        EXPECT_NEAR(code[q1[n + i]] * absmax1[blocks + b], w3[i], absmax1[blocks + b] / 255.0 + 1e-6) << i;
        EXPECT_NEAR(ucode[q2[i]] * absmax2[b], w2[i], absmax2[b] / 510.0 + 1e-9) << i;
      }
    }
  }
}

// 4-bit Adam: codes two a byte (the even value in the high nibble), absmax per 128 values. One
// step from random codes against the definition in double: dequantize, update, block maximum,
// nearest code.
TEST(Optimizer4bit, AdamMatchesDefinition) {
  const std::vector<float> signed_map = {-0.8875f, -0.6625f, -0.4375f, -0.2125f, -0.0775f, -0.0325f, -0.0055f, 0.f,
                                         0.0055f,  0.0325f,  0.0775f,  0.2125f,  0.4375f,  0.6625f,  0.8875f,  1.f};
  std::vector<float> linear_map(16);
  for (int i = 0; i < 16; ++i) linear_map[i] = float(i + 1) / 16.f;
  for (const int64_t n : {int64_t(1), int64_t(127), int64_t(129), int64_t(1001)}) {
    SCOPED_TRACE(n);
    const int64_t blocks = bnb::num_blocks(n, bnb::kOptimizerBlock4bit), bytes = (n + 1) / 2;
    std::mt19937 rng(11 + uint32_t(n));
    std::normal_distribution<float> N(0.f, 1.f);
    std::uniform_int_distribution<int> byte(0, 255);
    std::vector<float> p(n), g(n), a1(blocks), a2(blocks), stats(bnb::kStats, 0.f);
    std::vector<uint8_t> q1(bytes), q2(bytes);
    for (auto& x : p) x = N(rng);
    for (auto& x : g) x = N(rng);
    for (auto& x : q1) x = uint8_t(byte(rng));
    for (auto& x : q2) x = uint8_t(byte(rng));
    for (int64_t b = 0; b < blocks; ++b) {
      a1[b] = 0.1f + 0.01f * float(b % 3);
      a2[b] = 0.01f + 0.001f * float(b % 5);
    }
    auto code = [](const std::vector<uint8_t>& q, int64_t i) { return (q[i / 2] >> (i % 2 ? 0 : 4)) & 0xf; };
    const int step = 4;
    const auto h = adam_hyper(step, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f);
    std::vector<double> m(n), v(n), want_p(n);
    for (int64_t i = 0; i < n; ++i) {
      const double m0 = double(signed_map[code(q1, i)] * a1[i / 128]);
      const double v0 = double(linear_map[code(q2, i)] * a2[i / 128]);
      m[i] = 0.9 * m0 + 0.1 * g[i];
      v[i] = 0.999 * v0 + 0.001 * double(g[i]) * g[i];
      const double u = (m[i] / (1 - std::pow(0.9, step))) / (std::sqrt(v[i] / (1 - std::pow(0.999, step))) + 1e-8);
      want_p[i] = p[i] * (1 - 1e-2 * 0.1) - 1e-2 * u;
    }
    bnb::TensorSlot s{p.data(), g.data(), q1.data(), q2.data(), a1.data(), a2.data(), nullptr, stats.data(), n};
    bnb::cpu::optimizer_update_4bit(bnb::DType::Float32, h, &s, 1, signed_map.data(), linear_map.data());
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(p[i], want_p[i], 1e-5) << i;
    for (int64_t b = 0; b < blocks; ++b) {
      double mm = 0.0, mv = 0.0;
      for (int64_t i = b * 128; i < std::min<int64_t>(n, (b + 1) * 128); ++i) {
        mm = std::max(mm, std::fabs(m[i]));
        mv = std::max(mv, v[i]);
      }
      EXPECT_NEAR(a1[b], mm, 1e-5 * mm) << "block " << b;
      EXPECT_NEAR(a2[b], mv, 1e-5 * mv) << "block " << b;
    }
    // the nearest code: no other code of the map lies closer to the scaled value
    for (int64_t i = 0; i < n; ++i) {
      const double x1 = m[i] / a1[i / 128], x2 = v[i] / a2[i / 128];
      const double d1 = std::fabs(signed_map[code(q1, i)] - x1), d2 = std::fabs(linear_map[code(q2, i)] - x2);
      for (int c = 0; c < 16; ++c) {
        EXPECT_LE(d1, std::fabs(signed_map[c] - x1) + 1e-6) << i;
        EXPECT_LE(d2, std::fabs(linear_map[c] - x2) + 1e-6) << i;
      }
    }
    if (n % 2) {  // the padding nibble past an odd end is 0
      EXPECT_EQ(q1.back() & 0xf, 0);
      EXPECT_EQ(q2.back() & 0xf, 0);
    }
  }
}

}  // namespace
