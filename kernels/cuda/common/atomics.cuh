// Atomic max of non-negative floats (absmax statistics merged across blocks): their bit
// patterns order like the values, so an integer max on the bits is a float max. Not for
// negative values or -0.0f, which order after every positive one.
#pragma once

namespace bnb::cuda {

__device__ __forceinline__ void atomic_max_nonneg(float* addr, float v) {
  atomicMax(reinterpret_cast<unsigned int*>(addr), __float_as_uint(v));
}

}  // namespace bnb::cuda
