// Atomic merges of statistics across blocks. A max of non-negative floats: their bit patterns
// order like the values, so an integer max on the bits is a float max (not for negative values
// or -0.0f, which order after every positive one).
#pragma once
#include "bnb/nonfinite.h"

namespace bnb::cuda {

__device__ __forceinline__ void atomic_max_nonneg(float* addr, float v) {
  atomicMax(reinterpret_cast<unsigned int*>(addr), __float_as_uint(v));
}

// *addr = int8_absmax_merge(*addr, v) (bnb/nonfinite.h), atomically: a compare-and-swap loop,
// left as soon as the merge would not change what is stored (the common case once a column's
// maximum is in).
__device__ __forceinline__ void atomic_int8_absmax_merge(float* addr, float v) {
  unsigned int* word = reinterpret_cast<unsigned int*>(addr);
  unsigned int seen = *reinterpret_cast<volatile unsigned int*>(word);
  while (true) {
    const unsigned int merged = __float_as_uint(int8_absmax_merge(__uint_as_float(seen), v));
    if (merged == seen) return;
    const unsigned int before = atomicCAS(word, seen, merged);
    if (before == seen) return;
    seen = before;
  }
}

}  // namespace bnb::cuda
