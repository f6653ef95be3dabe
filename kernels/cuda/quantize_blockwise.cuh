// Block-wise quantization kernels, templated on element type and block size. Each dtype's
// instantiations live in their own .cu file so the build compiles them in parallel.
//
// Work split: a CTA of 256 threads takes a tile of 2048 values (4096 at blocksize 4096);
// each thread owns 8 (or 16) consecutive values, read and written with 16-byte accesses.
// A quantization block is therefore a group of blocksize / 8 consecutive threads (8 to 256),
// whose absmax is a shuffle reduction, through shared memory when the group spans warps.
// The grid is persistent (as many CTAs as fit on the GPU, striding over tiles) so the
// replicated lookup table is built once per CTA, not once per tile.
#pragma once
#include <algorithm>

#include "bnb/quantize_cuda.h"
#include "quant_common.cuh"

namespace bnb::cuda {

template <int BLOCK> struct BlockwiseShape {
  static constexpr int kPerThread = BLOCK >= 4096 ? 16 : 8;
  static constexpr int kTile = kThreads * kPerThread;
  static constexpr int kGroup = BLOCK / kPerThread;  // threads per quantization block
  static_assert(kGroup >= 8 && kGroup <= kThreads, "group within one CTA");
};

// Max over a group of G consecutive threads; every thread of the CTA must call it.
template <int G>
__device__ __forceinline__ float group_max(float v, float* s_warp) {
#pragma unroll
  for (int o = (G < 32 ? G : 32) / 2; o >= 1; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  if constexpr (G <= 32) {
    return v;
  } else {
    constexpr int kWarps = G / 32;
    const int warp = threadIdx.x / 32;
    if (threadIdx.x % 32 == 0) s_warp[warp] = v;
    __syncthreads();
    const int first = (warp / kWarps) * kWarps;
    float r = s_warp[first];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) r = fmaxf(r, s_warp[first + w]);
    __syncthreads();  // s_warp is reused by the next tile
    return r;
  }
}

template <typename T, int BLOCK>
__global__ void __launch_bounds__(kThreads)
quantize_blockwise_kernel(const T* __restrict__ A, const float* __restrict__ code, uint8_t* __restrict__ out,
                          float* __restrict__ absmax, int64_t n) {
  using S = BlockwiseShape<BLOCK>;
  extern __shared__ float table[];
  __shared__ float s_warp[kThreads / 32];
  fill_replicated_midpoints(code, table);
  const int lane = threadIdx.x % kLanes;
  const bool vector_ok = aligned16(A) && aligned16(out);
  const int64_t tiles = (n + S::kTile - 1) / S::kTile;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t base = tile * S::kTile + int64_t(threadIdx.x) * S::kPerThread;
    const bool full = vector_ok && (tile + 1) * S::kTile <= n;
    float v[S::kPerThread];
    if (full) {
      load_vec<T, S::kPerThread>(A + base, v);
    } else {
#pragma unroll
      for (int j = 0; j < S::kPerThread; ++j) v[j] = base + j < n ? to_float(A[base + j]) : 0.f;
    }
    float m = 0.f;
#pragma unroll
    for (int j = 0; j < S::kPerThread; ++j) m = fmaxf(m, fabsf(v[j]));
    m = group_max<S::kGroup>(m, s_warp);
    if (threadIdx.x % S::kGroup == 0 && base < n) absmax[base / BLOCK] = m;
    const float scale = m > 0.f ? 1.0f / m : 0.f;
    uint8_t q[S::kPerThread];
#pragma unroll
    for (int j = 0; j < S::kPerThread; ++j) q[j] = nearest_code(table, v[j] * scale, lane);
    if (full) {
      store_codes<S::kPerThread>(out + base, q);
    } else {
#pragma unroll
      for (int j = 0; j < S::kPerThread; ++j)
        if (base + j < n) out[base + j] = q[j];
    }
  }
}

template <typename T, int BLOCK>
__global__ void __launch_bounds__(kThreads)
dequantize_blockwise_kernel(const uint8_t* __restrict__ A, const float* __restrict__ code,
                            const float* __restrict__ absmax, T* __restrict__ out, int64_t n) {
  using S = BlockwiseShape<BLOCK>;
  extern __shared__ float table[];
  fill_replicated_code(code, table);
  const int lane = threadIdx.x % kLanes;
  const bool vector_ok = aligned16(A) && aligned16(out);
  const int64_t tiles = (n + S::kTile - 1) / S::kTile;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t base = tile * S::kTile + int64_t(threadIdx.x) * S::kPerThread;
    if (base >= n) continue;
    const bool full = vector_ok && (tile + 1) * S::kTile <= n;
    const float m = __ldg(absmax + base / BLOCK);
    uint8_t q[S::kPerThread];
    if (full) {
      load_codes<S::kPerThread>(A + base, q);
    } else {
#pragma unroll
      for (int j = 0; j < S::kPerThread; ++j) q[j] = base + j < n ? A[base + j] : 0;
    }
    float v[S::kPerThread];
#pragma unroll
    for (int j = 0; j < S::kPerThread; ++j) v[j] = table[q[j] * kLanes + lane] * m;
    if (full) {
      store_vec<T, S::kPerThread>(out + base, v);
    } else {
#pragma unroll
      for (int j = 0; j < S::kPerThread; ++j)
        if (base + j < n) out[base + j] = from_float<T>(v[j]);
    }
  }
}

template <typename T, int BLOCK>
cudaError_t launch_quantize_blockwise_bs(const T* A, const float* code, uint8_t* out, float* absmax,
                                         int64_t n, cudaStream_t stream) {
  using S = BlockwiseShape<BLOCK>;
  const int64_t tiles = (n + S::kTile - 1) / S::kTile;
  const auto kernel = quantize_blockwise_kernel<T, BLOCK>;
  const int smem = (kCodeSize - 1) * kLanes * sizeof(float);
  const int64_t grid = std::min<int64_t>(tiles, persistent_grid((const void*)kernel, kThreads, smem));
  kernel<<<int(grid), kThreads, smem, stream>>>(A, code, out, absmax, n);
  return cudaGetLastError();
}

template <typename T, int BLOCK>
cudaError_t launch_dequantize_blockwise_bs(const uint8_t* A, const float* code, const float* absmax, T* out,
                                           int64_t n, cudaStream_t stream) {
  using S = BlockwiseShape<BLOCK>;
  const int64_t tiles = (n + S::kTile - 1) / S::kTile;
  const auto kernel = dequantize_blockwise_kernel<T, BLOCK>;
  const int smem = kReplicatedTableBytes;
  const int64_t grid = std::min<int64_t>(tiles, persistent_grid((const void*)kernel, kThreads, smem));
  kernel<<<int(grid), kThreads, smem, stream>>>(A, code, absmax, out, n);
  return cudaGetLastError();
}

#define BNB_FOR_EACH_BLOCKSIZE(X) X(64) X(128) X(256) X(512) X(1024) X(2048) X(4096)

template <typename T>
cudaError_t launch_quantize_blockwise(const T* A, const float* code, uint8_t* out, float* absmax, int64_t n,
                                      int64_t blocksize, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  switch (blocksize) {
#define BNB_CASE(B) case B: return launch_quantize_blockwise_bs<T, B>(A, code, out, absmax, n, stream);
    BNB_FOR_EACH_BLOCKSIZE(BNB_CASE)
#undef BNB_CASE
  }
  return cudaErrorInvalidValue;
}

template <typename T>
cudaError_t launch_dequantize_blockwise(const uint8_t* A, const float* code, const float* absmax, T* out,
                                        int64_t n, int64_t blocksize, cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  switch (blocksize) {
#define BNB_CASE(B) case B: return launch_dequantize_blockwise_bs<T, B>(A, code, absmax, out, n, stream);
    BNB_FOR_EACH_BLOCKSIZE(BNB_CASE)
#undef BNB_CASE
  }
  return cudaErrorInvalidValue;
}

// Each dtype's file instantiates these two for its T.
#define BNB_INSTANTIATE_BLOCKWISE(T)                                                                   \
  template cudaError_t launch_quantize_blockwise<T>(const T*, const float*, uint8_t*, float*, int64_t, \
                                                    int64_t, cudaStream_t);                            \
  template cudaError_t launch_dequantize_blockwise<T>(const uint8_t*, const float*, const float*, T*,  \
                                                      int64_t, int64_t, cudaStream_t);

}  // namespace bnb::cuda
