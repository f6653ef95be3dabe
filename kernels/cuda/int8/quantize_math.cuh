// Shared by the LLM.int8() kernels: the rounding that the CPU kernels
// reproduce exactly (kernels/cpu/int8.cpp).
#pragma once
#include <cstdint>
#include <type_traits>

#include "../common/reduce.cuh"
#include "../common/quant.cuh"

namespace bnb::cuda {

constexpr float kInt8Inv127 = 1.0f / 127.0f;
constexpr float kInt8Inv127Sq = 1.0f / (127.0f * 127.0f);

// 127 * (1 / absmax) with IEEE rounding at each step, as the CPU and the reference library.
__device__ __forceinline__ float int8_scale(float absmax) {
  return absmax > 0.f ? __fmul_rn(127.0f, __frcp_rn(absmax)) : 0.f;
}

__device__ __forceinline__ int8_t int8_round(float v, float scale) {
  const int q = __float2int_rn(__fmul_rn(v, scale));
  return int8_t(max(-127, min(127, q)));
}

__device__ __forceinline__ bool int8_regular(float a, float threshold) { return threshold <= 0.f || a < threshold; }

// Quantizes the V values of one 16-byte piece `raw` of a row with `scale` (outliers, at or above
// `threshold` become 0) and stores the V codes at `dst` with one access.
template <typename T, int V>
__device__ __forceinline__ void quantize_piece(const uint4& raw, float scale, float threshold, int8_t* dst) {
  static_assert(V * sizeof(T) == 16, "a 16-byte piece");
  using Pack = std::conditional_t<V == 8, uint2, uint32_t>;
  const T* e = reinterpret_cast<const T*>(&raw);
  int8_t q[V];
#pragma unroll
  for (int j = 0; j < V; ++j) {
    const float x = to_float(e[j]);
    q[j] = int8_regular(fabsf(x), threshold) ? int8_round(x, scale) : int8_t(0);
  }
  Pack packed;
  memcpy(&packed, q, V);
  *reinterpret_cast<Pack*>(dst) = packed;
}

// Four 16-bit or 32-bit outputs with one 8- or 16-byte store.
template <typename T>
__device__ __forceinline__ void store4(T* dst, const T (&o)[4]) {
  using Pack = std::conditional_t<sizeof(T) == 2, uint2, uint4>;
  Pack raw;
  memcpy(&raw, o, sizeof(Pack));
  *reinterpret_cast<Pack*>(dst) = raw;
}

}  // namespace bnb::cuda
