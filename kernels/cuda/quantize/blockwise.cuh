// Block-wise quantization kernels, templated on element type and block size. Each dtype's
// instantiations live in their own .cu file so the build compiles them in parallel.
//
// Work split: a thread reads its values in 16-byte chunks (V = 4 floats or 8 halves); chunk c
// of a tile is V * 256 consecutive values, one chunk per thread, so every warp-wide access is
// contiguous (fully coalesced, for the codes too). A quantization block is either a group of
// blocksize / V consecutive threads inside one chunk (reduced with shuffles, through shared
// memory when the group spans warps), or, for blocks larger than a chunk, the whole tile.
// The grid is persistent (as many CTAs as fit on the GPU, striding over tiles) so the
// replicated lookup table is built once per CTA, not once per tile.
#pragma once
#include <algorithm>

#include "bnb/nonfinite.h"
#include "bnb/quantize_cuda.h"
#include "../common/launch.cuh"
#include "../common/reduce.cuh"
#include "../common/quant.cuh"

namespace bnb::cuda {

template <typename T, int BLOCK> struct BlockwiseShape {
  static constexpr int kVec = 16 / sizeof(T);               // values per 16-byte chunk
  static constexpr int kChunkSpan = kThreads * kVec;        // values of one chunk across the CTA
  static constexpr bool kBlockInChunk = BLOCK <= kChunkSpan;
  // At least 32 bytes of input in flight per thread; a larger block takes whole tiles.
  static constexpr int kChunks = kBlockInChunk ? (kVec == 4 ? 2 : 1) : BLOCK / kChunkSpan;
  static constexpr int kTile = kChunks * kChunkSpan;
  static constexpr int kGroup = kBlockInChunk ? BLOCK / kVec : kThreads;  // threads per block
  // Dequantize reads only a quarter of what it writes: four chunks per thread keep enough
  // reads in flight.
  static constexpr int kDequantChunks = kBlockInChunk ? 4 : kChunks;
  static constexpr int kDequantTile = kDequantChunks * kChunkSpan;
  static_assert(kGroup >= 8 && kGroup <= kThreads, "group within one CTA");
};

// Max over a group of G consecutive threads; every thread of the CTA must call it. Groups
// wider than a warp meet in shared memory; `s_warp` alternates between two halves from one
// call to the next (`parity`), so one barrier per reduction suffices: a warp cannot overwrite
// a half before every warp has passed the barrier of the call that read it.
template <int G>
__device__ __forceinline__ float group_max(float v, float* s_warp, int parity) {
  v = warp_max<(G < 32 ? G : 32)>(v);
  if constexpr (G <= 32) {
    return v;
  } else {
    constexpr int kWarps = G / 32;
    float* half = s_warp + parity * (kThreads / 32);
    const int warp = threadIdx.x / 32;
    if (threadIdx.x % 32 == 0) half[warp] = v;
    __syncthreads();
    const int first = (warp / kWarps) * kWarps;
    float r = half[first];
#pragma unroll
    for (int w = 1; w < kWarps; ++w) r = fmaxf(r, half[first + w]);
    return r;
  }
}

template <typename T, int BLOCK>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSM)
quantize_blockwise_kernel(const T* __restrict__ A, const float* __restrict__ code, uint8_t* __restrict__ out,
                          float* __restrict__ absmax, int64_t n) {
  using S = BlockwiseShape<T, BLOCK>;
  constexpr int V = S::kVec, C = S::kChunks;
  extern __shared__ float table[];
  __shared__ float s_warp[2 * kThreads / 32];
  int parity = 0;
  fill_replicated_midpoints(code, table);
  const float* lane_table = table + threadIdx.x % kLanes;
  const float middle = middle_pivot(lane_table);
  const bool vector_ok = aligned16(A) && aligned16(out);
  const int64_t tiles = (n + S::kTile - 1) / S::kTile;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t first = tile * S::kTile + int64_t(threadIdx.x) * V;  // this thread's chunk 0
    const bool full = vector_ok && (tile + 1) * S::kTile <= n;
    float v[C][V];
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int64_t base = first + int64_t(c) * S::kChunkSpan;
      if (full) {
        load_vec<T, V>(A + base, v[c]);
      } else {
#pragma unroll
        for (int j = 0; j < V; ++j) v[c][j] = base + j < n ? to_float(A[base + j]) : 0.f;
      }
    }
    BlockScale scale[C];
    bool marked[C];
    if constexpr (S::kBlockInChunk) {
#pragma unroll
      for (int c = 0; c < C; ++c) {
        float m = 0.f, f = 0.f;
#pragma unroll
        for (int j = 0; j < V; ++j) m = fmaxf(m, finite_abs(v[c][j])), f = fmaxf(f, nonfinite_flag(v[c][j]));
        m = group_max<S::kGroup>(m, s_warp, parity);
        parity ^= 1;
        f = group_max<S::kGroup>(f, s_warp, parity);
        parity ^= 1;
        const int64_t base = first + int64_t(c) * S::kChunkSpan;
        if (threadIdx.x % S::kGroup == 0 && base < n) absmax[base / BLOCK] = stored_absmax(m, f);
        scale[c] = block_scale(m, true);
        marked[c] = f > 0.f;
      }
    } else {
      float m = 0.f, f = 0.f;
#pragma unroll
      for (int c = 0; c < C; ++c)
#pragma unroll
        for (int j = 0; j < V; ++j) m = fmaxf(m, finite_abs(v[c][j])), f = fmaxf(f, nonfinite_flag(v[c][j]));
      m = group_max<kThreads>(m, s_warp, parity);
      parity ^= 1;
      f = group_max<kThreads>(f, s_warp, parity);
      parity ^= 1;
      if (threadIdx.x == 0) absmax[tile] = stored_absmax(m, f);
#pragma unroll
      for (int c = 0; c < C; ++c) scale[c] = block_scale(m, true), marked[c] = f > 0.f;
    }
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int64_t base = first + int64_t(c) * S::kChunkSpan;
      uint8_t q[V];
#pragma unroll
      for (int j = 0; j < V; ++j)
        q[j] = marked_code_8bit(nearest_code(lane_table, middle, scale[c].apply(v[c][j])), v[c][j], marked[c]);
      if (full) {
        store_code_vec<V>(out + base, q);
      } else {
#pragma unroll
        for (int j = 0; j < V; ++j)
          if (base + j < n) out[base + j] = q[j];
      }
    }
  }
}

template <typename T, int BLOCK>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSM)
dequantize_blockwise_kernel(const uint8_t* __restrict__ A, const float* __restrict__ code,
                            const float* __restrict__ absmax, T* __restrict__ out, int64_t n) {
  using S = BlockwiseShape<T, BLOCK>;
  constexpr int V = S::kVec, C = S::kDequantChunks;
  extern __shared__ float table[];
  fill_replicated_code(code, table);
  const float* lane_table = table + threadIdx.x % kLanes;
  const bool vector_ok = aligned16(A) && aligned16(out);
  const int64_t tiles = (n + S::kDequantTile - 1) / S::kDequantTile;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t first = tile * S::kDequantTile + int64_t(threadIdx.x) * V;
    const bool full = vector_ok && (tile + 1) * S::kDequantTile <= n;
    uint8_t q[C][V];
    float m[C];
#pragma unroll
    for (int c = 0; c < C; ++c) {  // all loads first: several independent requests in flight
      const int64_t base = first + int64_t(c) * S::kChunkSpan;
      if (full) {
        load_code_vec<V>(A + base, q[c]);
      } else {
#pragma unroll
        for (int j = 0; j < V; ++j) q[c][j] = base + j < n ? A[base + j] : 0;
      }
      m[c] = base < n ? __ldg(absmax + base / BLOCK) : 0.f;
    }
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int64_t base = first + int64_t(c) * S::kChunkSpan;
      float v[V];
#pragma unroll
      for (int j = 0; j < V; ++j)
        v[j] = dequantized_value(lane_table[q[c][j] * kLanes], q[c][j], kReservedCode8bit, m[c]);
      if (full) {
        store_vec<T, V>(out + base, v);
      } else {
#pragma unroll
        for (int j = 0; j < V; ++j)
          if (base + j < n) out[base + j] = from_float<T>(v[j]);
      }
    }
  }
}

template <typename T, int BLOCK>
cudaError_t launch_quantize_blockwise_bs(const T* A, const float* code, uint8_t* out, float* absmax,
                                         int64_t n, cudaStream_t stream) {
  using S = BlockwiseShape<T, BLOCK>;
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
  using S = BlockwiseShape<T, BLOCK>;
  const int64_t tiles = (n + S::kDequantTile - 1) / S::kDequantTile;
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
