// Nearest entry of a sorted 256-value map, by a branch-free binary search over the 255
// midpoints between neighbouring entries: the index is the number of midpoints below x.
#pragma once
#include <cstdint>
#include "bnb/dtype.h"

namespace bnb::cpu {

struct Midpoints {
  float m[kCodeSize - 1];
  explicit Midpoints(const float* code) {
    for (int i = 0; i < kCodeSize - 1; ++i) m[i] = 0.5f * (code[i] + code[i + 1]);
  }
  uint8_t nearest(float x) const {
    int idx = 0;
    for (int step = 128; step >= 1; step >>= 1)
      if (x > m[idx + step - 1]) idx += step;
    return uint8_t(idx);
  }
};

}  // namespace bnb::cpu
