// The optimizer update on the CPU, one tensor at a time with its elements spread over
// threads. The 8-bit path works in whole quantization blocks so that dequantize, update and
// requantize happen in one pass, with the block's new absmax known before its codes are
// written.
#include <algorithm>
#include <cmath>
#include <vector>

#include "bnb/optimizer_cpu.h"
#include "element_io.h"
#include "nearest_code.h"

namespace bnb::cpu {
namespace {

float clip_scale(const TensorSlot& s) { return s.gnorm_scale ? *s.gnorm_scale : 1.f; }

// The 32-bit state of one tensor.
template <class E>
void update_32bit(const OptimizerHyper& h, const TensorSlot& s) {
  auto* p = static_cast<typename E::storage*>(s.p);
  const auto* g = static_cast<const typename E::storage*>(s.g);
  auto* s1 = static_cast<float*>(s.state1);
  auto* s2 = static_cast<float*>(s.state2);
  auto* s3 = static_cast<float*>(s.state3);
  const bool two = num_states(h.algorithm) == 2, three = has_state3(h.algorithm);
  const float gs = clip_scale(s);
  const int64_t n = s.n;
  if (h.max_unorm > 0.f) {  // the trust ratio needs the norms of the whole update first
    double usq = 0.0, psq = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : usq, psq)
    for (int64_t i = 0; i < n; ++i) {
      const float pv = E::load(p, i);
      float a = s1[i], b = two ? s2[i] : 0.f, c = three ? s3[i] : 0.f, u;
      step_element(h, pv, E::load(g, i) * gs, a, b, c, u);
      usq += double(u) * u;
      psq += double(pv) * pv;
    }
    *stat_double(s.stats, kUnormSq) = usq;
    *stat_double(s.stats, kPnormSq) = psq;
  }
  const float trust = trust_factor(h, s.stats);
  const float decay = weight_decay_factor(h);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) {
    const float pv = E::load(p, i);
    float a = s1[i], b = two ? s2[i] : 0.f, c = three ? s3[i] : 0.f, u;
    step_element(h, pv, E::load(g, i) * gs, a, b, c, u);
    s1[i] = a;
    if (two) s2[i] = b;
    if (three) s3[i] = c;
    E::store(p, i, pv * decay - h.lr * trust * u);
  }
}

struct Maps {
  const float* code1;
  const float* code2;
  const Midpoints<>* mid1;
  const Midpoints<>* mid2;
};

// The 8-bit state of one tensor, in blocks of kOptimizerBlock values.
template <class E>
void update_8bit(const OptimizerHyper& h, const TensorSlot& s, const Maps& m) {
  auto* p = static_cast<typename E::storage*>(s.p);
  const auto* g = static_cast<const typename E::storage*>(s.g);
  auto* q1 = static_cast<uint8_t*>(s.state1);
  auto* q2 = static_cast<uint8_t*>(s.state2);
  auto* q3 = static_cast<uint8_t*>(s.state3);  // quantized with the first state's (signed) map
  const bool two = num_states(h.algorithm) == 2, three = has_state3(h.algorithm);
  const float gs = clip_scale(s);
  const int64_t n = s.n, blocks = num_blocks(n, kOptimizerBlock);
  const bool bw = h.block_wise;  // (the op refuses tensor-wise state for three states)
  auto old_max1 = [&](int64_t b) { return bw ? s.absmax1[b] : s.absmax1[0]; };
  auto old_max2 = [&](int64_t b) { return bw ? s.absmax2[b] : s.absmax2[0]; };
  if (needs_prepass(h, true)) {  // norms of the update, max of the new states
    double usq = 0.0, psq = 0.0;
    float m1 = 0.f, m2 = 0.f;
#pragma omp parallel for schedule(static) reduction(+ : usq, psq) reduction(max : m1, m2)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t lo = b * kOptimizerBlock, hi = std::min(n, lo + kOptimizerBlock);
      const float a1 = old_max1(b), a2 = two ? old_max2(b) : 0.f;
      for (int64_t i = lo; i < hi; ++i) {
        const float pv = E::load(p, i);
        float x = m.code1[q1[i]] * a1, y = two ? m.code2[q2[i]] * a2 : 0.f, z = 0.f, u;
        step_element(h, pv, E::load(g, i) * gs, x, y, z, u);
        usq += double(u) * u;
        psq += double(pv) * pv;
        m1 = std::max(m1, std::fabs(x));
        m2 = std::max(m2, std::fabs(y));
      }
    }
    *stat_double(s.stats, kUnormSq) = usq;
    *stat_double(s.stats, kPnormSq) = psq;
    s.stats[kNewMax1] = m1;
    s.stats[kNewMax2] = m2;
  }
  const float trust = trust_factor(h, s.stats);
  const float decay = weight_decay_factor(h);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t lo = b * kOptimizerBlock, hi = std::min(n, lo + kOptimizerBlock);
    const float a1 = old_max1(b), a2 = two ? old_max2(b) : 0.f, a3 = three ? s.absmax3[b] : 0.f;
    float n1[kOptimizerBlock], n2[kOptimizerBlock], n3[kOptimizerBlock];
    float m1 = 0.f, m2 = 0.f, m3 = 0.f;
    for (int64_t i = lo; i < hi; ++i) {
      const float pv = E::load(p, i);
      float x = m.code1[q1[i]] * a1, y = two ? m.code2[q2[i]] * a2 : 0.f, z = three ? m.code1[q3[i]] * a3 : 0.f, u;
      step_element(h, pv, E::load(g, i) * gs, x, y, z, u);
      n1[i - lo] = x;
      n2[i - lo] = y;
      n3[i - lo] = z;
      m1 = std::max(m1, std::fabs(x));
      m2 = std::max(m2, std::fabs(y));
      m3 = std::max(m3, std::fabs(z));
      E::store(p, i, pv * decay - h.lr * trust * u);
    }
    if (three) {
      s.absmax3[b] = m3;
      const float r3 = m3 > 0.f ? 1.f / m3 : 0.f;
      for (int64_t i = lo; i < hi; ++i) q3[i] = m.mid1->nearest(n3[i - lo] * r3);
    }
    if (!bw) {
      m1 = s.stats[kNewMax1];
      m2 = s.stats[kNewMax2];
    } else {
      s.absmax1[b] = m1;
      if (two) s.absmax2[b] = m2;
    }
    const float r1 = m1 > 0.f ? 1.f / m1 : 0.f, r2 = m2 > 0.f ? 1.f / m2 : 0.f;
    for (int64_t i = lo; i < hi; ++i) {
      q1[i] = m.mid1->nearest(n1[i - lo] * r1);
      if (two) q2[i] = m.mid2->nearest(n2[i - lo] * r2);
    }
  }
  if (!bw && n > 0) {
    s.absmax1[0] = s.stats[kNewMax1];
    if (two) s.absmax2[0] = s.stats[kNewMax2];
  }
}

}  // namespace

void optimizer_update_32bit(DType dtype, const OptimizerHyper& h, const TensorSlot* slots, int64_t count) {
  dispatch_dtype(dtype, [&](auto tag) {
    using E = Element<decltype(tag)::value>;
    for (int64_t t = 0; t < count; ++t) update_32bit<E>(h, slots[t]);
  });
}

void optimizer_update_8bit(DType dtype, const OptimizerHyper& h, const TensorSlot* slots, int64_t count,
                           const float* code1, const float* code2) {
  const Midpoints<> mid1(code1);
  const bool two = num_states(h.algorithm) == 2;
  const Midpoints<> mid2(two ? code2 : code1);
  const Maps maps{code1, two ? code2 : code1, &mid1, &mid2};
  dispatch_dtype(dtype, [&](auto tag) {
    using E = Element<decltype(tag)::value>;
    for (int64_t t = 0; t < count; ++t) update_8bit<E>(h, slots[t], maps);
  });
}

}  // namespace bnb::cpu
