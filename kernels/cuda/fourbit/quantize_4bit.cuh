// Block-wise 4-bit quantize and dequantize kernels, templated on element type (and, for
// quantize, block size and code format). Each dtype's instantiations live in their own .cu
// file so the build compiles them in parallel.
//
// Work split: a thread's chunk is one 16-byte access of the wide side
// (V = 4 floats or 8 halves: the input of quantize, the output of dequantize) and V / 2 bytes of
// codes; chunk c of a tile holds V * kThreads consecutive values, one chunk a thread, so every
// warp-wide access is contiguous on both sides (quantize's tiles: block_tiles.cuh). The
// grid is persistent, striding over tiles.
//
// Quantize is memory-bound only if it spends few instructions a value: an H100 streams about
// four 16-bit values per SM cycle, and its integer/compare/select pipe (ALU) runs 64 lanes a
// cycle, so a value may take some 16 ALU instructions in all. Hence: one reduction of absmax
// keys per block (common/abs_key.cuh) instead of one for the absmax and one for the mark, two
// 16-bit blocks a shuffle; the code from a 64-entry table in shared memory (codes_4bit.h: the
// bucket by a rounded-down fused multiply-add, its address by a multiply-add, the compare by a
// subtraction, so that NF4 leaves two ALU instructions a value and FP4 about four, where the
// compare-and-select search takes some twenty); and four 16-byte chunks a thread in flight.
#pragma once
#include <algorithm>

#include "bnb/codes_4bit.h"
#include "bnb/quantize_4bit_cuda.h"
#include "../common/block_tiles.cuh"
#include "block_scale_parts.cuh"
#include "../common/launch.cuh"
#include "../common/quant.cuh"

namespace bnb::cuda {

// V / 2 packed bytes (2 or 4) as one access; p aligned to its size.
template <int B> __device__ __forceinline__ void store_packed(uint8_t* p, const uint8_t (&b)[B]) {
  static_assert(B == 2 || B == 4, "2 or 4 bytes");
  if constexpr (B == 2) {
    *reinterpret_cast<uint16_t*>(p) = uint16_t(b[0] | (b[1] << 8));
  } else {
    __stcs(reinterpret_cast<unsigned int*>(p), unsigned(b[0]) | (unsigned(b[1]) << 8) | (unsigned(b[2]) << 16) |
                                                   (unsigned(b[3]) << 24));
  }
}
template <int B> __device__ __forceinline__ void load_packed(const uint8_t* p, uint8_t (&b)[B]) {
  static_assert(B == 2 || B == 4, "2 or 4 bytes");
  unsigned raw = B == 2 ? unsigned(__ldcs(reinterpret_cast<const unsigned short*>(p)))
                        : __ldcs(reinterpret_cast<const unsigned int*>(p));
#pragma unroll
  for (int j = 0; j < B; ++j) b[j] = uint8_t(raw >> (8 * j));
}

// The code table in shared memory, addressed by a value's bucket bits (codes_4bit.h): the
// table's address less kBucketBits4bit entries, so that an entry's address is bits * 8 + base,
// one instruction (the bits, 2^23 plus the bucket, would first need 2^23 taken off to index
// the table as an array).
struct CodeTable4bit {
  uint32_t base;
  // `stored`: the base, as one thread wrote it to shared memory before the table's barrier.
  // Read back from memory, it is one number to the compiler, which otherwise splits the sum
  // into the table's address and the offset again, adding both to every value's.
  __device__ explicit CodeTable4bit(const uint32_t& stored) : base(stored) {}
  __device__ static uint32_t base_of(const CodeBucket4bit* table) {
    return uint32_t(__cvta_generic_to_shared(table)) - kBucketBits4bit * uint32_t(sizeof(CodeBucket4bit));
  }
  template <QuantType4bit Q> __device__ __forceinline__ uint8_t code(float x) const {
    const uint32_t addr = code_bucket_bits_4bit(x) * uint32_t(sizeof(CodeBucket4bit)) + base;  // wraps: exact
    // (The address depends on the base read after the table's barrier, which keeps the load
    // after it.)
    CodeBucket4bit e;
    asm("ld.shared.v2.b32 {%0, %1}, [%2];" : "=f"(e.threshold), "=r"(e.codes) : "r"(addr));
    return code_4bit_from_entry<Q>(x, e);
  }
};

// The V codes of a chunk, two a byte (the first value in the high nibble). A block that is not
// marked and whose absmax the code table applies to (the usual case, and the same for the whole
// block) takes the short path: code_4bit_in_block's (x * 1) * mul is x * mul, and the table
// gives the search's code.
template <QuantType4bit Q, int V>
__device__ __forceinline__ void chunk_codes(const float (&v)[V], float amax, BlockScale scale, bool marked,
                                            const CodeTable4bit& table, uint8_t (&b)[V / 2]) {
  uint8_t q[V];
  if (!marked && code_table_applies_4bit(amax)) {
#pragma unroll
    for (int j = 0; j < V; ++j) q[j] = table.template code<Q>(v[j] * scale.mul);
  } else {
#pragma unroll
    for (int j = 0; j < V; ++j) q[j] = code_4bit_in_block<Q>(v[j], scale, marked);
  }
#pragma unroll
  for (int j = 0; j < V / 2; ++j) b[j] = pack_4bit(q[2 * j], q[2 * j + 1]);
}

// Two CTAs an SM at least (64 registers a thread), so that one loads while the other computes.
template <typename T, int BLOCK, QuantType4bit Q>
__global__ void __launch_bounds__(kThreads, kTileCtasPerSM)
quantize_4bit_kernel(const T* __restrict__ A, uint8_t* __restrict__ out, float* __restrict__ absmax, int64_t n) {
  using S = BlockTileShape<T, BLOCK>;
  constexpr int V = S::kVec;
  __shared__ unsigned s_warp[2 * kKeyHalf<S::kBlocksPerThread>];
  __shared__ CodeBucket4bit s_table[kCodeBuckets4bit];
  __shared__ uint32_t s_table_base;
  if (threadIdx.x < kCodeBuckets4bit) s_table[threadIdx.x] = code_bucket_entry_4bit<Q>(threadIdx.x);
  if (threadIdx.x == 0) s_table_base = CodeTable4bit::base_of(s_table);
  __syncthreads();
  const CodeTable4bit table(s_table_base);
  quantize_block_tiles<T, BLOCK>(
      A, aligned16(out), absmax, n, s_warp, [](float amax) { return block_scale_4bit(amax); },
      [&](const float (&v)[V], BlockScale scale, float amax, bool marked, int64_t base, bool full) {
        uint8_t q[V / 2];
        chunk_codes<Q>(v, amax, scale, marked, table, q);
        if (full) {
          store_packed<V / 2>(out + base / 2, q);
        } else {
#pragma unroll
          for (int j = 0; j < V / 2; ++j)
            if (base + 2 * j < n) out[base / 2 + j] = q[j];
        }
      });
}

// Dequantize: four chunks a thread (it reads an eighth or a quarter of what it writes, so
// several requests must be in flight). Any block size: a chunk never straddles two blocks
// (V <= 8 < 32), so each chunk reads one absmax, found by a shift.
constexpr int kDequant4bitChunks = 4;

// The scales plain or nested, read as stored (block_scale_parts.cuh, as the products read
// them), so that a nested weight needs no float32 absmax made first (linear_4bit's prefill
// path: four small launches and their host time fewer).
template <typename T>
__global__ void __launch_bounds__(kThreads)
dequantize_4bit_kernel(const uint8_t* __restrict__ A, const float* __restrict__ code, BlockScales scales,
                       T* __restrict__ out, int64_t n, int log2_blocksize) {
  constexpr int V = 16 / sizeof(T), C = kDequant4bitChunks, kSpan = kThreads * V, kTile = C * kSpan;
  // 16 entries in 16 banks: any pattern of lookups by a warp is conflict-free.
  __shared__ float s_code[16];
  __shared__ float s_ncode[kCodeSize];  // nested scales: the values of their codes
  if (threadIdx.x < 16) s_code[threadIdx.x] = code[threadIdx.x];
  if (scales.nested) {
    for (int i = threadIdx.x; i < kCodeSize; i += blockDim.x) s_ncode[i] = __ldg(scales.nested_code + i);
  }
  const float offset = scales.nested ? __ldg(scales.offset) : 0.f;
  __syncthreads();
  const bool vector_ok = aligned16(A) && aligned16(out);
  const int64_t tiles = (n + kTile - 1) / kTile;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t first = tile * kTile + int64_t(threadIdx.x) * V;
    const bool full = vector_ok && (tile + 1) * kTile <= n;
    uint8_t q[C][V / 2];
    float m[C];
#pragma unroll
    for (int c = 0; c < C; ++c) {  // all loads first
      const int64_t base = first + int64_t(c) * kSpan;
      if (full) {
        load_packed<V / 2>(A + base / 2, q[c]);
      } else {
#pragma unroll
        for (int j = 0; j < V / 2; ++j) q[c][j] = base + 2 * j < n ? A[base / 2 + j] : 0;
      }
      m[c] = base < n ? scale_of(scales, load_scale_parts(scales, base >> log2_blocksize), s_ncode, offset) : 0.f;
    }
#pragma unroll
    for (int c = 0; c < C; ++c) {
      const int64_t base = first + int64_t(c) * kSpan;
      float v[V];
#pragma unroll
      for (int j = 0; j < V / 2; ++j) {
        const uint8_t hi = q[c][j] >> 4, lo = q[c][j] & 0xF;
        v[2 * j] = dequantized_value(s_code[hi], hi, kReservedCode4bit, m[c]);
        v[2 * j + 1] = dequantized_value(s_code[lo], lo, kReservedCode4bit, m[c]);
      }
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

template <typename T, int BLOCK, QuantType4bit Q>
cudaError_t launch_quantize_4bit_bs(const T* A, uint8_t* out, float* absmax, int64_t n, cudaStream_t stream) {
  using S = BlockTileShape<T, BLOCK>;
  const int64_t tiles = (n + S::kTile - 1) / S::kTile;
  const auto kernel = quantize_4bit_kernel<T, BLOCK, Q>;
  const int64_t grid = std::min<int64_t>(tiles, persistent_grid((const void*)kernel, kThreads, 0));
  kernel<<<int(grid), kThreads, 0, stream>>>(A, out, absmax, n);
  return cudaGetLastError();
}

#define BNB_FOR_EACH_BLOCKSIZE_4BIT(X) X(32) X(64) X(128) X(256) X(512) X(1024) X(2048) X(4096)

template <typename T, QuantType4bit Q>
cudaError_t launch_quantize_4bit_q(const T* A, uint8_t* out, float* absmax, int64_t n, int64_t blocksize,
                                   cudaStream_t stream) {
  switch (blocksize) {
#define BNB_CASE(B) case B: return launch_quantize_4bit_bs<T, B, Q>(A, out, absmax, n, stream);
    BNB_FOR_EACH_BLOCKSIZE_4BIT(BNB_CASE)
#undef BNB_CASE
  }
  return cudaErrorInvalidValue;
}

template <typename T>
cudaError_t launch_quantize_4bit(const T* A, QuantType4bit quant_type, uint8_t* out, float* absmax, int64_t n,
                                 int64_t blocksize, cudaStream_t stream) {
  if (!is_supported_blocksize(kFormat4bit, blocksize)) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  return quant_type == QuantType4bit::NF4
             ? launch_quantize_4bit_q<T, QuantType4bit::NF4>(A, out, absmax, n, blocksize, stream)
             : launch_quantize_4bit_q<T, QuantType4bit::FP4>(A, out, absmax, n, blocksize, stream);
}

template <typename T>
cudaError_t launch_dequantize_4bit(const uint8_t* A, const float* code, const BlockScales& scales, T* out, int64_t n,
                                   int64_t blocksize, cudaStream_t stream) {
  if (!is_supported_blocksize(kFormat4bit, blocksize)) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  int log2_blocksize = 0;
  while ((int64_t(1) << log2_blocksize) < blocksize) ++log2_blocksize;
  constexpr int64_t kTile = int64_t(kDequant4bitChunks) * kThreads * (16 / sizeof(T));
  const auto kernel = dequantize_4bit_kernel<T>;
  const int64_t grid = std::min<int64_t>((n + kTile - 1) / kTile, persistent_grid((const void*)kernel, kThreads, 0));
  kernel<<<int(grid), kThreads, 0, stream>>>(A, code, scales, out, n, log2_blocksize);
  return cudaGetLastError();
}

// Each dtype's file instantiates these two for its T.
#define BNB_INSTANTIATE_4BIT(T)                                                                             \
  template cudaError_t launch_quantize_4bit<T>(const T*, QuantType4bit, uint8_t*, float*, int64_t, int64_t, \
                                               cudaStream_t);                                               \
  template cudaError_t launch_dequantize_4bit<T>(const uint8_t*, const float*, const BlockScales&, T*, int64_t, \
                                                 int64_t, cudaStream_t);

}  // namespace bnb::cuda
