// Block-wise quantization kernels, templated on element type and block size. Each dtype's
// instantiations live in their own .cu file so the build compiles them in parallel.
//
// Work split: a thread reads its values in 16-byte chunks (V = 4 floats or 8 halves); chunk c
// of a tile is V * kThreads consecutive values, one chunk per thread, so every warp-wide access
// is contiguous (fully coalesced, for the codes too). The grid is persistent (as many CTAs as
// fit on the GPU, striding over tiles) so the replicated lookup table is built once per CTA,
// not once per tile.
//
// Quantize keeps 64 bytes of raw input a thread in flight (common/block_tiles.cuh: four chunks,
// or one block larger than that), reduces each block's absmax and non-finite mark in one
// reduction of integer keys (a second only where a block holds a non-finite value), several
// blocks a thread per reduction, and runs two CTAs of 512 threads an SM (the 32 KB table each).
#pragma once
#include <algorithm>

#include "bnb/nonfinite.h"
#include "bnb/quantize_cuda.h"
#include "../common/block_tiles.cuh"
#include "../common/launch.cuh"
#include "../common/quant.cuh"

namespace bnb::cuda {

// Shared memory of the midpoint table that quantize searches (rows 0..254 of the replicated table).
constexpr int kMidpointTableBytes = (kCodeSize - 1) * kLanes * sizeof(float);

template <typename T, int BLOCK>
__global__ void __launch_bounds__(kThreads, kTileCtasPerSM)
quantize_blockwise_kernel(const T* __restrict__ A, const float* __restrict__ code, uint8_t* __restrict__ out,
                          float* __restrict__ absmax, int64_t n) {
  using S = BlockTileShape<T, BLOCK>;
  constexpr int V = S::kVec, C = S::kChunks, K = S::kBlockChunks, G = S::kGroup, NB = S::kBlocksPerThread;
  extern __shared__ float table[];
  __shared__ unsigned s_warp[2 * kKeyHalf<NB>];
  int parity = 0;
  fill_replicated_midpoints(code, table);
  const float* lane_table = table + threadIdx.x % kLanes;
  const float middle = middle_pivot(lane_table);
  const bool vector_ok = aligned16(A) && aligned16(out);
  const int64_t tiles = (n + S::kTile - 1) / S::kTile;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t first = tile * S::kTile + int64_t(threadIdx.x) * V;  // this thread's chunk 0
    const bool full = vector_ok && (tile + 1) * S::kTile <= n;
    uint4 raw[C];
    load_tile<T, BLOCK>(A, first, n, full, raw);
    // This thread's NB blocks: block b is chunks b * K .. b * K + K - 1.
    float amax[NB];  // the finite absmax
    bool marked[NB];
    tile_block_absmax<T, K, G>(raw, amax, marked, s_warp, parity);
#pragma unroll
    for (int b = 0; b < NB; ++b) {
      const int64_t block_first = first + int64_t(b) * K * S::kChunkSpan;
      if (threadIdx.x % G == 0 && block_first < n)
        absmax[block_first / BLOCK] = stored_absmax(amax[b], marked[b] ? 1.f : 0.f);
      const BlockScale scale = block_scale(amax[b], true);
#pragma unroll
      for (int k = 0; k < K; ++k) {
        const int64_t base = block_first + int64_t(k) * S::kChunkSpan;
        float v[V];
        chunk_values<T>(raw[b * K + k], v);
        uint8_t q[V];
#pragma unroll
        for (int j = 0; j < V; ++j) q[j] = nearest_code(lane_table, middle, scale.apply(v[j]));
        if (marked[b]) {  // rare: the block's non-finite values take the reserved code
#pragma unroll
          for (int j = 0; j < V; ++j) q[j] = marked_code_8bit(q[j], v[j], true);
        }
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
}

// Dequantize reads only a quarter of what it writes: four chunks per thread keep enough reads in
// flight (a block larger than a chunk of the CTA: its chunks). Any count works, each chunk reads
// its own absmax.
template <typename T, int BLOCK> struct DequantizeTile {
  using S = BlockTileShape<T, BLOCK>;
  static constexpr int kChunks = S::kBlockInChunk ? 4 : S::kBlockChunks;
  static constexpr int kTile = kChunks * S::kChunkSpan;
};

template <typename T, int BLOCK>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSM)
dequantize_blockwise_kernel(const uint8_t* __restrict__ A, const float* __restrict__ code,
                            const float* __restrict__ absmax, T* __restrict__ out, int64_t n) {
  using S = BlockTileShape<T, BLOCK>;
  using D = DequantizeTile<T, BLOCK>;
  constexpr int V = S::kVec, C = D::kChunks;
  extern __shared__ float table[];
  fill_replicated_code(code, table);
  const float* lane_table = table + threadIdx.x % kLanes;
  const bool vector_ok = aligned16(A) && aligned16(out);
  const int64_t tiles = (n + D::kTile - 1) / D::kTile;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t first = tile * D::kTile + int64_t(threadIdx.x) * V;
    const bool full = vector_ok && (tile + 1) * D::kTile <= n;
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
  using S = BlockTileShape<T, BLOCK>;
  const int64_t tiles = (n + S::kTile - 1) / S::kTile;
  const auto kernel = quantize_blockwise_kernel<T, BLOCK>;
  const int smem = kMidpointTableBytes;  // and the kernel's static key scratch, which the occupancy query counts
  const int64_t grid = std::min<int64_t>(tiles, persistent_grid((const void*)kernel, kThreads, smem));
  kernel<<<int(grid), kThreads, smem, stream>>>(A, code, out, absmax, n);
  return cudaGetLastError();
}

template <typename T, int BLOCK>
cudaError_t launch_dequantize_blockwise_bs(const uint8_t* A, const float* code, const float* absmax, T* out,
                                           int64_t n, cudaStream_t stream) {
  using D = DequantizeTile<T, BLOCK>;
  const int64_t tiles = (n + D::kTile - 1) / D::kTile;
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
