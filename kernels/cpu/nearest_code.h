// Nearest entry of a sorted map of N values (N a power of two: 256 for 8-bit codes, 16 for
// 4-bit ones), by a binary search over the N - 1 midpoints between neighbouring entries:
// the index is the number of midpoints below x. The search is written without branches:
// its comparisons are data-dependent and mispredicted half the time, which made a branchy
// search the bulk of an 8-bit optimizer step.
#pragma once
#include <cstdint>
#include "bnb/dtype.h"

namespace bnb::cpu {

template <int N = kCodeSize>
struct Midpoints {
  static_assert(N >= 2 && N <= 256 && (N & (N - 1)) == 0, "a power of two that a byte indexes");
  float m[N - 1];
  explicit Midpoints(const float* code) {
    for (int i = 0; i < N - 1; ++i) m[i] = 0.5f * (code[i] + code[i + 1]);
  }
  uint8_t nearest(float x) const {
    int idx = 0;
#pragma GCC unroll 8
    for (int step = N / 2; step >= 1; step >>= 1) idx += int(x > m[idx + step - 1]) * step;
    return uint8_t(idx);
  }
  // The same, except that a value exactly on a midpoint takes the even index of its two
  // neighbours rather than the lower one: the tie rule of the reference library's tensor-wise
  // quantization (its bisection from pivot 127 always ends on an even index, which keeps ties).
  uint8_t nearest_even_tie(float x) const {
    const int idx = nearest(x);
    return uint8_t((idx & 1) && idx < N - 1 && x == m[idx] ? idx + 1 : idx);
  }
};

}  // namespace bnb::cpu
