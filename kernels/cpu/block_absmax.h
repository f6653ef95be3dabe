// The absmax a block-wise format stores for one block (CPU), as bnb/nonfinite.h defines it: the
// largest magnitude of the block's finite values, negated when the block holds NaN or Inf.
#pragma once
#include <algorithm>
#include <cstdint>

#include "bnb/nonfinite.h"

namespace bnb::cpu {

// Values lo..hi of `a` (read through element type E); sets amax (finite) and marked.
template <class E>
float stored_block_absmax(const typename E::storage* a, int64_t lo, int64_t hi, float& amax, bool& marked) {
  float m = 0.f, flag = 0.f;
  for (int64_t i = lo; i < hi; ++i) {
    const float x = E::load(a, i);
    m = std::max(m, finite_abs(x));
    flag = std::max(flag, nonfinite_flag(x));
  }
  amax = m;
  marked = flag > 0.f;
  return stored_absmax(m, flag);
}

}  // namespace bnb::cpu
