// A block's absmax and its non-finite mark (bnb/nonfinite.h) from one reduction.
//
// The bits of |x| read as an unsigned int order every NaN above +Inf above every finite
// magnitude, and the finite ones as their values. So the maximum of these keys over a block
// says both things at once: the block holds a non-finite value iff the key is at least
// kInfKey, and otherwise the key is the bits of the block's finite absmax. Only a block that
// holds a non-finite value needs a second reduction, over the keys of its finite values.
// 16-bit inputs are reduced on their raw halves, two a 32-bit instruction: fp16 and bf16
// magnitudes order the same way, and their largest converts exactly to a float32 key.
#pragma once
#include <cstdint>
#include <type_traits>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "quant.cuh"  // kThreads

namespace bnb::cuda {

constexpr unsigned kInfKey = 0x7f800000u;  // the key of +-Inf; NaNs are above it

__device__ __forceinline__ unsigned abs_key(float x) { return __float_as_uint(x) & 0x7fffffffu; }

// The key of |x| for a finite x, 0 for a non-finite one: what the finite absmax is the maximum of.
__device__ __forceinline__ unsigned finite_abs_key(float x) {
  const unsigned k = abs_key(x);
  return k < kInfKey ? k : 0u;
}

// The largest key of the 16 / sizeof(T) values of a 16-byte chunk.
template <typename T> __device__ __forceinline__ unsigned chunk_abs_key(const uint4& raw) {
  const unsigned w[4] = {raw.x, raw.y, raw.z, raw.w};
  if constexpr (sizeof(T) == 4) {
    unsigned m = 0;
#pragma unroll
    for (int i = 0; i < 4; ++i) m = max(m, w[i] & 0x7fffffffu);
    return m;
  } else {
    unsigned m2 = 0;  // two 16-bit magnitudes
#pragma unroll
    for (int i = 0; i < 4; ++i) m2 = __vmaxu2(m2, w[i] & 0x7fff7fffu);
    const unsigned short m = static_cast<unsigned short>(max(m2 & 0xffffu, m2 >> 16));
    if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      return unsigned(m) << 16;  // a bf16 is the top half of its float32
    } else {
      return __float_as_uint(__half2float(__ushort_as_half(m)));  // exact; NaN stays NaN
    }
  }
}

// The maximum of the keys of a group of G consecutive threads (every thread of the CTA calls
// it), and whether any group in the call's scope, the warp (G <= 32) or the CTA, holds a
// non-finite value. A second reduction that only such groups need can then be skipped by a
// branch every thread of that scope takes alike. Groups wider than a warp meet in shared
// memory; `s_warp` (2 * kThreads / 32 keys) alternates halves from one call to the next
// (`parity`, flipped here), so the one barrier per call suffices: a warp cannot overwrite a
// half before every warp has passed the barrier of the call that read it.
struct GroupKey {
  unsigned max;
  bool any_nonfinite;
};
template <int G> __device__ __forceinline__ GroupKey group_max_key(unsigned k, unsigned* s_warp, int& parity) {
  static_assert(G >= 1 && G <= kThreads && (G & (G - 1)) == 0, "a power of two within the CTA");
  if constexpr (G < 32) {
#pragma unroll
    for (int o = G / 2; o >= 1; o >>= 1) k = max(k, __shfl_xor_sync(0xffffffffu, k, o));
    return {k, __any_sync(0xffffffffu, k >= kInfKey) != 0};
  } else {
    k = __reduce_max_sync(0xffffffffu, k);
    if constexpr (G == 32) {
      return {k, k >= kInfKey};
    } else {
      constexpr int kWarps = G / 32;
      unsigned* half = s_warp + parity * (kThreads / 32);
      parity ^= 1;
      const int warp = threadIdx.x / 32;
      if (threadIdx.x % 32 == 0) half[warp] = k;
      const bool any = __syncthreads_or(k >= kInfKey) != 0;
      const int first = (warp / kWarps) * kWarps;
      unsigned r = half[first];
#pragma unroll
      for (int w = 1; w < kWarps; ++w) r = max(r, half[first + w]);
      return {r, any};
    }
  }
}

}  // namespace bnb::cuda
