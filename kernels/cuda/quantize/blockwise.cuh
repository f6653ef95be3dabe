// Block-wise quantization kernels, templated on element type and block size. Each dtype's
// instantiations live in their own .cu file so the build compiles them in parallel.
//
// Quantize works on the tiles of the 4-bit quantize (common/block_tiles.cuh): four 16-byte
// chunks of input a thread in flight, raw until their block's scale is known, each block's
// absmax and non-finite mark from one reduction of integer keys, two CTAs an SM. A value's
// code comes from the bucket lookup of common/code_lookup.cuh (one shared-memory load and one
// compare; exact for any sorted map, walking the midpoints where a bucket holds two): the
// 8-step search it replaced spent about 40 instructions a value and kept 16-bit input at
// 39-45% of the copy bandwidth on an H100 (float32 61-70%), the lookup about 13 (83-94%).
//
// Dequantize: a thread reads its codes in chunks of 16 bytes of output (V = 4 floats or 8
// halves); chunk c of a tile is V * 256 consecutive values, one chunk a thread, so every
// warp-wide access is contiguous; the map's values from a table replicated once a lane. The
// grids are persistent (as many CTAs as fit on the GPU, striding over tiles), so each CTA
// builds its tables once.
#pragma once
#include <algorithm>
#include <type_traits>

#include "bnb/nonfinite.h"
#include "bnb/quantize_cuda.h"
#include "../common/block_tiles.cuh"
#include "../common/code_lookup.cuh"
#include "../common/launch.cuh"
#include "../common/quant.cuh"

namespace bnb::cuda {

// Dequantize's tiles: the quantize tiles' chunks (16 bytes of output a thread), four a thread,
// since it reads only a quarter of what it writes (a block larger than a chunk of the CTA:
// whole blocks a tile).
template <typename T, int BLOCK> struct DequantizeTileShape : BlockTileShape<T, BLOCK> {
  using Base = BlockTileShape<T, BLOCK>;
  static constexpr int kChunks = Base::kBlockInChunk ? 4 : Base::kBlockChunks;
  static constexpr int kTile = kChunks * Base::kChunkSpan;
};

// Whether the quantize kernel's lookup takes 4-byte entries (common/code_lookup.cuh,
// CodeLookup32: half the shared-memory traffic a value, three integer instructions for one
// subtraction); off until benchmarks/ab_quantize_lookup.cu has measured it.
constexpr bool kQuantizeEntry32 = false;
template <bool Entry32> using QuantizeLookup = std::conditional_t<Entry32, CodeLookup32, CodeLookup>;

// The V codes of one chunk of a block with scale `scale`; marked: the block holds a non-finite
// value (its non-finite values take the reserved code, no other value does). Look: CodeLookup
// or CodeLookup32.
template <bool OneStep, int V, typename Look>
__device__ __forceinline__ void chunk_codes_8bit(const float (&v)[V], BlockScale scale, bool marked,
                                                 const Look& look, uint8_t (&q)[V]) {
#pragma unroll
  for (int j = 0; j < V; ++j)  // (saturated: a non-finite x, whose code the mark replaces, stays inside the table)
    q[j] = uint8_t(lookup_code<true>(look, scale.apply(v[j]), OneStep));
  if (marked) {
#pragma unroll
    for (int j = 0; j < V; ++j) q[j] = marked_code_8bit(q[j], v[j], true);
  }
}

template <typename T, int BLOCK, bool OneStep, typename Look>
__device__ __forceinline__ void quantize_tiles_8bit(const T* __restrict__ A, uint8_t* __restrict__ out,
                                                    float* __restrict__ absmax, int64_t n, unsigned* s_warp,
                                                    const Look& look) {
  constexpr int V = BlockTileShape<T, BLOCK>::kVec;
  quantize_block_tiles<T, BLOCK>(
      A, aligned16(out), absmax, n, s_warp, [](float amax) { return block_scale(amax, true); },
      [&](const float (&v)[V], BlockScale scale, float, bool marked, int64_t base, bool full) {
        uint8_t q[V];
        chunk_codes_8bit<OneStep>(v, scale, marked, look, q);
        if (full) {
          store_code_vec<V>(out + base, q);
        } else {
#pragma unroll
          for (int j = 0; j < V; ++j)
            if (base + j < n) out[base + j] = q[j];
        }
      });
}

// Two CTAs an SM at least (64 registers a thread), so that one loads while the other computes;
// the map's lookup (about 59 KB; 34 KB with 4-byte entries) in dynamic shared memory.
template <typename T, int BLOCK, bool Entry32 = kQuantizeEntry32>
__global__ void __launch_bounds__(kThreads, kTileCtasPerSM)
quantize_blockwise_kernel(const T* __restrict__ A, const float* __restrict__ code, uint8_t* __restrict__ out,
                          float* __restrict__ absmax, int64_t n) {
  __shared__ unsigned s_warp[2 * kKeyHalf<BlockTileShape<T, BLOCK>::kBlocksPerThread>];
  extern __shared__ __align__(16) unsigned char lookup_smem[];
  const auto look = carve_lookup<QuantizeLookup<Entry32>>(lookup_smem, true);
  if (build_lookup(code, look, true))  // the one-compare form is exact for this map (ends with a barrier)
    quantize_tiles_8bit<T, BLOCK, true>(A, out, absmax, n, s_warp, look);
  else
    quantize_tiles_8bit<T, BLOCK, false>(A, out, absmax, n, s_warp, look);
}

// Dynamic shared memory of quantize_blockwise_kernel.
template <bool Entry32 = kQuantizeEntry32> constexpr int quantize_lookup_bytes() {
  return lookup_bytes<QuantizeLookup<Entry32>>(true);
}

template <typename T, int BLOCK>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSM)
dequantize_blockwise_kernel(const uint8_t* __restrict__ A, const float* __restrict__ code,
                            const float* __restrict__ absmax, T* __restrict__ out, int64_t n) {
  using S = DequantizeTileShape<T, BLOCK>;
  constexpr int V = S::kVec, C = S::kChunks;
  extern __shared__ float table[];
  fill_replicated_code(code, table);
  const float* lane_table = table + threadIdx.x % kLanes;
  const bool vector_ok = aligned16(A) && aligned16(out);
  const int64_t tiles = (n + S::kTile - 1) / S::kTile;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t first = tile * S::kTile + int64_t(threadIdx.x) * V;
    const bool full = vector_ok && (tile + 1) * S::kTile <= n;
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
  const int smem = quantize_lookup_bytes();
  const cudaError_t allowed = allow_dynamic_smem((const void*)kernel, smem);
  if (allowed != cudaSuccess) return allowed;
  const int64_t grid = std::min<int64_t>(tiles, persistent_grid((const void*)kernel, kThreads, smem));
  kernel<<<int(grid), kThreads, smem, stream>>>(A, code, out, absmax, n);
  return cudaGetLastError();
}

template <typename T, int BLOCK>
cudaError_t launch_dequantize_blockwise_bs(const uint8_t* A, const float* code, const float* absmax, T* out,
                                           int64_t n, cudaStream_t stream) {
  using S = DequantizeTileShape<T, BLOCK>;
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
