// The optimizer update on the CPU, one tensor at a time with its elements spread over
// threads. The 8-bit and 4-bit paths work in whole quantization blocks so that dequantize,
// update and requantize happen in one pass, with the block's new absmax known before its codes
// are written.
#include <algorithm>
#include <cmath>
#include <vector>

#include "bnb/nonfinite.h"
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

// The codes of a quantized state: 8-bit codes one a byte, 4-bit codes two a byte with the
// first value in the high nibble.
template <int Bits>
struct Codes {
  static constexpr int kMapSize = 1 << Bits;
  static constexpr int64_t kBlock = Bits == 8 ? kOptimizerBlock : kOptimizerBlock4bit;
  static uint8_t get(const uint8_t* q, int64_t i) {
    if constexpr (Bits == 8) return q[i];
    else return uint8_t((q[i >> 1] >> ((~i & 1) << 2)) & 0xf);
  }
};

template <int Bits>
struct Maps {
  const float* code1;
  const float* code2;
  const Midpoints<Codes<Bits>::kMapSize>* mid1;
  const Midpoints<Codes<Bits>::kMapSize>* mid2;
};

// The quantized state of one tensor, in blocks of Codes<Bits>::kBlock values (a block's codes
// start on a byte: the 4-bit block is even).
template <class E, int Bits>
void update_quantized(const OptimizerHyper& h, const TensorSlot& s, const Maps<Bits>& m) {
  using C = Codes<Bits>;
  constexpr int64_t kBlock = C::kBlock;
  auto* p = static_cast<typename E::storage*>(s.p);
  const auto* g = static_cast<const typename E::storage*>(s.g);
  auto* q1 = static_cast<uint8_t*>(s.state1);
  auto* q2 = static_cast<uint8_t*>(s.state2);
  auto* q3 = static_cast<uint8_t*>(s.state3);  // quantized with the first state's (signed) map
  const bool two = num_states(h.algorithm) == 2, three = has_state3(h.algorithm);
  const float gs = clip_scale(s);
  const int64_t n = s.n, blocks = num_blocks(n, kBlock);
  const bool bw = h.block_wise;  // (the op refuses tensor-wise and 4-bit state for three states)
  auto old_max1 = [&](int64_t b) { return bw ? s.absmax1[b] : s.absmax1[0]; };
  auto old_max2 = [&](int64_t b) { return bw ? s.absmax2[b] : s.absmax2[0]; };
  if (needs_prepass(h, true)) {  // norms of the update, max of the new states
    double usq = 0.0, psq = 0.0;
    float m1 = 0.f, m2 = 0.f;
#pragma omp parallel for schedule(static) reduction(+ : usq, psq) reduction(max : m1, m2)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t lo = b * kBlock, hi = std::min(n, lo + kBlock);
      const float a1 = old_max1(b), a2 = two ? old_max2(b) : 0.f;
      for (int64_t i = lo; i < hi; ++i) {
        const float pv = E::load(p, i);
        float x = m.code1[C::get(q1, i)] * a1, y = two ? m.code2[C::get(q2, i)] * a2 : 0.f, z = 0.f, u;
        step_element(h, pv, E::load(g, i) * gs, x, y, z, u);
        usq += double(u) * u;
        psq += double(pv) * pv;
        m1 = std::max(m1, finite_abs(x));
        m2 = std::max(m2, finite_abs(y));
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
    const int64_t lo = b * kBlock, hi = std::min(n, lo + kBlock);
    const float a1 = old_max1(b), a2 = two ? old_max2(b) : 0.f, a3 = three ? s.absmax3[b] : 0.f;
    float n1[kBlock], n2[kBlock], n3[kBlock];
    float m1 = 0.f, m2 = 0.f, m3 = 0.f;
    for (int64_t i = lo; i < hi; ++i) {
      const float pv = E::load(p, i);
      float x = m.code1[C::get(q1, i)] * a1, y = two ? m.code2[C::get(q2, i)] * a2 : 0.f;
      float z = three ? m.code1[C::get(q3, i)] * a3 : 0.f, u;
      step_element(h, pv, E::load(g, i) * gs, x, y, z, u);
      n1[i - lo] = finite_or_zero(x);  // bnb/nonfinite.h
      n2[i - lo] = finite_or_zero(y);
      n3[i - lo] = finite_or_zero(z);
      m1 = std::max(m1, std::fabs(n1[i - lo]));
      m2 = std::max(m2, std::fabs(n2[i - lo]));
      m3 = std::max(m3, std::fabs(n3[i - lo]));
      E::store(p, i, pv * decay - h.lr * trust * u);
    }
    if constexpr (Bits == 8) {
      if (three) {
        s.absmax3[b] = m3;
        const BlockScale r3 = block_scale(m3, true);  // (bnb/nonfinite.h: a subnormal maximum is prescaled)
        for (int64_t i = lo; i < hi; ++i) q3[i] = m.mid1->nearest(r3.apply(n3[i - lo]));
      }
    }
    if (!bw) {
      m1 = s.stats[kNewMax1];
      m2 = s.stats[kNewMax2];
    } else {
      s.absmax1[b] = m1;
      if (two) s.absmax2[b] = m2;
    }
    const BlockScale r1 = block_scale(m1, true), r2 = block_scale(m2, true);
    if constexpr (Bits == 8) {
      for (int64_t i = lo; i < hi; ++i) {
        q1[i] = m.mid1->nearest(r1.apply(n1[i - lo]));
        if (two) q2[i] = m.mid2->nearest(r2.apply(n2[i - lo]));
      }
    } else {
      // a byte a pair, the even value high; past an odd end the low nibble is 0
      auto pair = [&](const Midpoints<C::kMapSize>* mid, const float* v, const BlockScale& r, int64_t i) {
        const int low = i + 1 < hi ? mid->nearest(r.apply(v[i + 1 - lo])) : 0;
        return uint8_t(mid->nearest(r.apply(v[i - lo])) << 4 | low);
      };
      for (int64_t i = lo; i < hi; i += 2) {
        q1[i >> 1] = pair(m.mid1, n1, r1, i);
        if (two) q2[i >> 1] = pair(m.mid2, n2, r2, i);
      }
    }
  }
  if (!bw && n > 0) {
    s.absmax1[0] = s.stats[kNewMax1];
    if (two) s.absmax2[0] = s.stats[kNewMax2];
  }
}

template <int Bits>
void update_quantized_slots(DType dtype, const OptimizerHyper& h, const TensorSlot* slots, int64_t count,
                            const float* code1, const float* code2) {
  constexpr int N = Codes<Bits>::kMapSize;
  const bool two = num_states(h.algorithm) == 2;
  const Midpoints<N> mid1(code1);
  const Midpoints<N> mid2(two ? code2 : code1);
  const Maps<Bits> maps{code1, two ? code2 : code1, &mid1, &mid2};
  dispatch_dtype(dtype, [&](auto tag) {
    using E = Element<decltype(tag)::value>;
    for (int64_t t = 0; t < count; ++t) update_quantized<E, Bits>(h, slots[t], maps);
  });
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
  update_quantized_slots<8>(dtype, h, slots, count, code1, code2);
}

void optimizer_update_4bit(DType dtype, const OptimizerHyper& h, const TensorSlot* slots, int64_t count,
                           const float* code1, const float* code2) {
  update_quantized_slots<4>(dtype, h, slots, count, code1, code2);
}

}  // namespace bnb::cpu
