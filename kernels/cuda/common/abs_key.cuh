// A block's absmax and its non-finite mark (bnb/nonfinite.h) from one reduction.
//
// The bits of |x| read as an unsigned int order every NaN above +Inf above every finite
// magnitude, and the finite ones as their values. So the maximum of these keys over a block
// says both things at once: the block holds a non-finite value iff the key is at least
// kInfKey, and otherwise the key is the bits of the block's finite absmax. Only a block that
// holds a non-finite value needs a second reduction, over the keys of its finite values.
//
// fp16 and bf16 magnitudes order the same way in their 16 bits, and their largest converts
// exactly to a float32 key; so 16-bit input is reduced on its raw halves, two keys a 32-bit
// word: two values an instruction within a thread, two blocks a shuffle across threads.
#pragma once
#include <cstdint>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <type_traits>

#include "quant.cuh"  // kThreads

namespace bnb::cuda {

constexpr unsigned kInfKey = 0x7f800000u;  // the key of +-Inf; NaNs are above it

__device__ __forceinline__ unsigned abs_key(float x) { return __float_as_uint(x) & 0x7fffffffu; }

// The key of |x| for a finite x, 0 for a non-finite one: what the finite absmax is the maximum of.
__device__ __forceinline__ unsigned finite_abs_key(float x) {
  const unsigned k = abs_key(x);
  return k < kInfKey ? k : 0u;
}

// How keys of element type T sit in 32-bit words and combine. kPerWord keys a word; `max`
// combines two words key by key; `nonfinite` says whether a word holds a non-finite key.
template <typename T> struct AbsKeys {  // float32: one key a word
  static constexpr int kPerWord = 1;
  __device__ static unsigned max(unsigned a, unsigned b) { return ::max(a, b); }
  __device__ static bool nonfinite(unsigned w) { return w >= kInfKey; }
  // The largest key of the four values of a 16-byte chunk.
  __device__ static unsigned of_chunk(const uint4& raw) {
    return ::max(::max(raw.x & 0x7fffffffu, raw.y & 0x7fffffffu), ::max(raw.z & 0x7fffffffu, raw.w & 0x7fffffffu));
  }
  __device__ static unsigned to_float_key(unsigned k) { return k; }
};
template <typename T, unsigned kInf16> struct AbsKeys16 {  // two 16-bit magnitudes a word
  static constexpr int kPerWord = 2;
  __device__ static unsigned max(unsigned a, unsigned b) { return __vmaxu2(a, b); }
  __device__ static bool nonfinite(unsigned w) { return ::max(w & 0xffffu, w >> 16) >= kInf16; }
  // The largest magnitude of the eight values of a 16-byte chunk (in the low half).
  __device__ static unsigned of_chunk(const uint4& raw) {
    const unsigned m2 = __vmaxu2(__vmaxu2(raw.x & 0x7fff7fffu, raw.y & 0x7fff7fffu),
                                 __vmaxu2(raw.z & 0x7fff7fffu, raw.w & 0x7fff7fffu));
    return ::max(m2 & 0xffffu, m2 >> 16);
  }
  // The float32 key of a 16-bit magnitude (exact; a NaN stays a NaN).
  __device__ static unsigned to_float_key(unsigned m) {
    if constexpr (std::is_same_v<T, __nv_bfloat16>) {
      return m << 16;  // a bf16 is the top half of its float32
    } else {
      return __float_as_uint(__half2float(__ushort_as_half(static_cast<unsigned short>(m))));
    }
  }
};
template <> struct AbsKeys<__nv_bfloat16> : AbsKeys16<__nv_bfloat16, 0x7f80u> {};
template <> struct AbsKeys<__half> : AbsKeys16<__half, 0x7c00u> {};

// Max over a group of G consecutive threads (every thread of the CTA calls it), word by word,
// of N words of keys combined by Keys::max. Returns whether any word in the call's scope, the
// warp (G <= 32) or the CTA, holds a non-finite key: every thread of that scope gets the same
// answer, so a second reduction that only such groups need may be skipped by a branch on it.
// Groups wider than a warp meet in shared memory; `s_warp` (2 * H words) alternates halves of
// H words from one call to the next (`parity`, flipped here), so the one barrier per call
// suffices: a warp cannot overwrite a half before every warp has passed the barrier of the call
// that read it. H is the same for every call that shares `s_warp` (calls of different N
// included), so that consecutive calls never touch the same words.
template <int G, typename Keys, int H, int N>
__device__ __forceinline__ bool group_max_keys(unsigned (&w)[N], unsigned* s_warp, int& parity) {
  static_assert(G >= 1 && G <= kThreads && (G & (G - 1)) == 0, "a power of two within the CTA");
  static_assert(N * (kThreads / 32) <= H, "a call's words fit in a half");
  constexpr int kLanes = G < 32 ? G : 32;
#pragma unroll
  for (int o = kLanes / 2; o >= 1; o >>= 1)
#pragma unroll
    for (int i = 0; i < N; ++i) w[i] = Keys::max(w[i], __shfl_xor_sync(0xffffffffu, w[i], o));
  bool nonfinite = false;
#pragma unroll
  for (int i = 0; i < N; ++i) nonfinite |= Keys::nonfinite(w[i]);
  if constexpr (G <= 32) {
    return __any_sync(0xffffffffu, nonfinite) != 0;
  } else {
    constexpr int kWarps = G / 32;
    unsigned* half = s_warp + parity * H;
    parity ^= 1;
    const int warp = threadIdx.x / 32;
    if (threadIdx.x % 32 == 0)
#pragma unroll
      for (int i = 0; i < N; ++i) half[warp * N + i] = w[i];
    const bool any = __syncthreads_or(nonfinite) != 0;
    // The group's kWarps * N words, lane l taking words l, l + 32, ...: word t is word t % N of
    // warp t / N, so a lane holds one word index throughout, and the shuffles at distances N
    // and above meet the same word of the other warps. A few registers: every thread reading
    // every word would hold up to 64 at once, and spill at 64 registers a thread.
    constexpr int kWords = kWarps * N;
    static_assert((N & (N - 1)) == 0 && 32 % N == 0, "a power of two of words that divides a warp");
    const int lane = threadIdx.x % 32;
    const unsigned* group = half + (warp / kWarps) * kWords;
    unsigned m = lane < kWords ? group[lane] : 0u;  // 0: below every key
#pragma unroll
    for (int t = 32; t < kWords; t += 32) m = Keys::max(m, group[t + lane]);
#pragma unroll
    for (int o = (kWords < 32 ? kWords : 32) / 2; o >= N; o >>= 1)
      m = Keys::max(m, __shfl_xor_sync(0xffffffffu, m, o));
#pragma unroll
    for (int i = 0; i < N; ++i) w[i] = __shfl_sync(0xffffffffu, m, i);
    return any;
  }
}

}  // namespace bnb::cuda
