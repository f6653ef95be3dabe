// 4-bit code values as the fused products feed them to tensor cores: two values of the dtype in
// one register (a byte's pair), and the table's 16 values as byte planes in registers, from
// which byte permutes make a byte's pair without memory (bnb/code_planes.h; the products' other
// way is a 256-entry table of pairs in shared memory).
#pragma once
#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "bnb/code_planes.h"

namespace bnb::cuda {

// Two values of T in one register, the first (the lower k) in the low half.
template <typename T> struct Pair4bit;
template <> struct Pair4bit<__half> {
  static __device__ __forceinline__ uint32_t pack(float first, float second) {
    const __half2 h = __floats2half2_rn(first, second);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
  static __device__ __forceinline__ uint32_t mul(uint32_t a, uint32_t b) {
    uint32_t d;
    asm("mul.rn.f16x2 %0, %1, %2;" : "=r"(d) : "r"(a), "r"(b));
    return d;
  }
};
template <> struct Pair4bit<__nv_bfloat16> {
  static __device__ __forceinline__ uint32_t pack(float first, float second) {
    const __nv_bfloat162 h = __floats2bfloat162_rn(first, second);
    return *reinterpret_cast<const uint32_t*>(&h);
  }
  // a * b + (-0.0): one rounding, and the sign of a zero product kept (mul.bf16x2 needs sm_90).
  static __device__ __forceinline__ uint32_t mul(uint32_t a, uint32_t b) {
    uint32_t d;
    asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(0x80008000u));
    return d;
  }
};

// The 16 code values rounded to T as byte planes (bnb/code_planes.h), made once a thread.
template <typename T>
__device__ __forceinline__ CodePlanes code_planes(const float* __restrict__ code) {
  uint16_t values[16];
#pragma unroll
  for (int e = 0; e < 16; ++e) values[e] = uint16_t(Pair4bit<T>::pack(__ldg(code + e), 0.f) & 0xffffu);
  return code_planes_of(values);
}

}  // namespace bnb::cuda
