// Device helpers shared by the quantization kernels: typed vector loads and stores, and
// the nearest-code search.
//
// Why a replicated table: the nearest-code search and the dequantize lookup read a
// 256-entry table at data-dependent indices. With one copy in shared memory, the 32 lanes
// of a warp hit random banks and serialise (about 4-way on real data). Keeping 32 copies,
// entry i of lane l at [i * 32 + l], puts every lane in its own bank: every lookup is one
// conflict-free shared-memory transaction, whatever the data.
#pragma once
#include <cstdint>
#include <cstring>
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "bnb/dtype.h"

namespace bnb::cuda {

constexpr int kLanes = 32;
// 512 threads share one 32 KB replicated table; at 32 registers a thread, four such CTAs fill
// an SM (64 warps), where 256-thread CTAs stopped at 48 warps for want of shared memory.
constexpr int kThreads = 512;
constexpr int kMinBlocksPerSM = 4;
// Shared memory of one replicated table (256 floats x 32 lanes).
constexpr int kReplicatedTableBytes = kCodeSize * kLanes * sizeof(float);

template <DType T> struct DeviceType;
template <> struct DeviceType<DType::Float32> { using type = float; };
template <> struct DeviceType<DType::Float16> { using type = __half; };
template <> struct DeviceType<DType::BFloat16> { using type = __nv_bfloat16; };

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }
// The two 16-bit values of a 32-bit word (element 0 in the low half, as in memory) as floats.
// For bf16 one shift or one mask each: converting element by element extracted the high half
// first, two instructions.
__device__ __forceinline__ float2 word_to_float2(uint32_t w, __nv_bfloat16) {
  return make_float2(__uint_as_float(w << 16), __uint_as_float(w & 0xffff0000u));
}
__device__ __forceinline__ float2 word_to_float2(uint32_t w, __half) {
  __half2 h;
  memcpy(&h, &w, sizeof(h));
  return __half22float2(h);
}
template <typename T> __device__ __forceinline__ T from_float(float v);
template <> __device__ __forceinline__ float from_float<float>(float v) { return v; }
template <> __device__ __forceinline__ __half from_float<__half>(float v) { return __float2half_rn(v); }
template <> __device__ __forceinline__ __nv_bfloat16 from_float<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Loads N consecutive elements as float with 16-byte loads. p must be 16-byte aligned and
// N * sizeof(T) a multiple of 16.
template <typename T, int N>
__device__ __forceinline__ void load_vec(const T* p, float (&v)[N]) {
  static_assert((N * sizeof(T)) % 16 == 0, "vector of whole 16-byte words");
  constexpr int kWords = N * sizeof(T) / 16;
  constexpr int kPer = 16 / sizeof(T);
#pragma unroll
  for (int w = 0; w < kWords; ++w) {
    uint4 raw = __ldcs(reinterpret_cast<const uint4*>(p) + w);  // streamed: read once
    const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
    for (int j = 0; j < kPer; ++j) v[w * kPer + j] = to_float(e[j]);
  }
}

template <typename T, int N>
__device__ __forceinline__ void store_vec(T* p, const float (&v)[N]) {
  static_assert((N * sizeof(T)) % 16 == 0, "vector of whole 16-byte words");
  constexpr int kWords = N * sizeof(T) / 16;
  constexpr int kPer = 16 / sizeof(T);
#pragma unroll
  for (int w = 0; w < kWords; ++w) {
    uint4 raw;
    T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
    for (int j = 0; j < kPer; ++j) e[j] = from_float<T>(v[w * kPer + j]);
    __stcs(reinterpret_cast<uint4*>(p) + w, raw);
  }
}

// N (8 or 16) codes as one 8- or 16-byte access.
template <int N>
__device__ __forceinline__ void load_codes(const uint8_t* p, uint8_t (&q)[N]) {
  static_assert(N == 8 || N == 16, "8 or 16 codes");
  if constexpr (N == 8) {
    uint2 raw = __ldcs(reinterpret_cast<const uint2*>(p));
    memcpy(q, &raw, 8);
  } else {
    uint4 raw = __ldcs(reinterpret_cast<const uint4*>(p));
    memcpy(q, &raw, 16);
  }
}
template <int N>
__device__ __forceinline__ void store_codes(uint8_t* p, const uint8_t (&q)[N]) {
  static_assert(N == 8 || N == 16, "8 or 16 codes");
  if constexpr (N == 8) {
    uint2 raw;
    memcpy(&raw, q, 8);
    __stcs(reinterpret_cast<uint2*>(p), raw);
  } else {
    uint4 raw;
    memcpy(&raw, q, 16);
    __stcs(reinterpret_cast<uint4*>(p), raw);
  }
}

// Fills table[i * 32 + lane] with the midpoint between code[i] and code[i + 1] (i < 255).
// The search only ever reads rows 0..254. Ends with a barrier.
__device__ __forceinline__ void fill_replicated_midpoints(const float* code, float* table) {
  for (int i = threadIdx.x; i < (kCodeSize - 1) * kLanes; i += blockDim.x) {
    const int row = i / kLanes;
    table[i] = 0.5f * (__ldg(code + row) + __ldg(code + row + 1));
  }
  __syncthreads();
}

// Fills table[i * 32 + lane] with code[i]. Ends with a barrier.
__device__ __forceinline__ void fill_replicated_code(const float* code, float* table) {
  for (int i = threadIdx.x; i < kCodeSize * kLanes; i += blockDim.x) table[i] = __ldg(code + i / kLanes);
  __syncthreads();
}

// A float at a 32-bit shared-memory address. Kept volatile so the compiler never moves it
// above the barrier that follows the table fill.
__device__ __forceinline__ float load_shared(uint32_t addr) {
  float v;
  asm volatile("ld.shared.f32 %0, [%1];" : "=f"(v) : "r"(addr));
  return v;
}

// Index of the nearest code entry: the number of midpoints below x (branch-free, 8 steps,
// each one conflict-free shared-memory load). `lane_table` is table + lane and `middle` its
// midpoint 127 (the first step's pivot, the same for every value, kept in a register). The
// search walks a 32-bit shared-memory address (row stride 128 bytes) rather than an index, so
// each step is one load with an immediate offset, one compare, one select and one add. NaN
// maps to 0.
__device__ __forceinline__ uint8_t nearest_code(const float* lane_table, float middle, float x) {
  constexpr uint32_t kRowBytes = kLanes * sizeof(float);
  const uint32_t base = static_cast<uint32_t>(__cvta_generic_to_shared(lane_table));
  uint32_t p = base + ((x > middle) ? 128u * kRowBytes : 0u);
#pragma unroll
  for (uint32_t step = 64; step >= 1; step >>= 1) {
    const float m = load_shared(p + (step - 1) * kRowBytes);
    p += (x > m) ? step * kRowBytes : 0u;
  }
  return uint8_t((p - base) / kRowBytes);
}

// Guards against the argument order (table, x, lane): an int lane would silently convert.
uint8_t nearest_code(const float*, float, int) = delete;

// nearest_code with a value exactly on a midpoint taking the even index of its two neighbours
// rather than the lower one (the tie rule of the reference library's tensor-wise quantization).
__device__ __forceinline__ uint8_t nearest_code_even_tie(const float* lane_table, float middle, float x) {
  const uint8_t q = nearest_code(lane_table, middle, x);
  return ((q & 1) && q < kCodeSize - 1 && x == lane_table[q * kLanes]) ? uint8_t(q + 1) : q;
}

// The first pivot of nearest_code, read once per thread after the table is filled.
__device__ __forceinline__ float middle_pivot(const float* lane_table) { return lane_table[127 * kLanes]; }

// V codes (V = 4, 8 or 16) as one 4-, 8- or 16-byte access.
template <int V>
__device__ __forceinline__ void load_code_vec(const uint8_t* p, uint8_t (&q)[V]) {
  if constexpr (V == 4) {
    const uint32_t raw = __ldcs(reinterpret_cast<const unsigned int*>(p));
    memcpy(q, &raw, 4);
  } else {
    load_codes<V>(p, q);
  }
}
template <int V>
__device__ __forceinline__ void store_code_vec(uint8_t* p, const uint8_t (&q)[V]) {
  if constexpr (V == 4) {
    uint32_t raw;
    memcpy(&raw, q, 4);
    __stcs(reinterpret_cast<unsigned int*>(p), raw);
  } else {
    store_codes<V>(p, q);
  }
}

__host__ __device__ __forceinline__ bool aligned16(const void* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

}  // namespace bnb::cuda
