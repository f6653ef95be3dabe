// The fused 4-bit matrix-vector product out[M, N] = A[M, K] @ dequant(W)[N, K]^T (+ bias) on
// CUDA cores: for float32 activations and for shapes the tensor-core kernels
// (gemm_4bit_stream.cuh for a decode step, gemm_4bit_mma.cuh) do not take. One warp per output
// feature (a row of W), its lanes striding over the row 32 weights (16 bytes) at a time; every
// weight is read once, dequantized in registers (rounded to T, as dequantize_4bit
// writes it) and applied to up to kGemvRows rows of A, whose sums stay in registers (float32)
// and meet by shuffles at the end. A is small and read through the caches.
#pragma once
#include <algorithm>
#include <type_traits>

#include "bnb/quantize_4bit_cuda.h"
#include "../common/reduce.cuh"
#include "../common/quant.cuh"
#include "gemm_4bit_mma.cuh"
#include "gemm_4bit_stream.cuh"

namespace bnb::cuda {

constexpr int kGemvRows = 16;        // rows of A per launch
constexpr int kGemvWarps = 8;        // output features per CTA
constexpr int kGemvChunk = 32;       // weights per 16-byte load

template <typename T> __device__ __forceinline__ float round_to(float v) { return to_float(from_float<T>(v)); }

// log2 of a power-of-two block size (blocks are found by a shift).
inline int log2_of(int64_t blocksize) {
  int l = 0;
  while ((int64_t(1) << l) < blocksize) ++l;
  return l;
}

template <typename T>
__global__ void __launch_bounds__(kGemvWarps * 32)
gemv_4bit_kernel(const T* __restrict__ A, const uint8_t* __restrict__ B, const float* __restrict__ code,
                 const BlockScales scales, const T* __restrict__ bias, T* __restrict__ out, int rows,
                 int64_t N, int64_t K, int log2_blocksize, bool vector_ok) {
  __shared__ float s_code[16];  // 16 banks: conflict-free lookups
  if (threadIdx.x < 16) s_code[threadIdx.x] = code[threadIdx.x];
  __syncthreads();
  const int lane = threadIdx.x % 32;
  const int64_t feature = int64_t(blockIdx.x) * kGemvWarps + threadIdx.x / 32;
  if (feature >= N) return;
  const int64_t row0 = feature * K;  // flattened index of the feature's first weight
  float acc[kGemvRows] = {};
  if (vector_ok) {
    // K % 32 == 0: a chunk of 32 weights is 16 aligned bytes inside one absmax block.
    for (int64_t k0 = int64_t(lane) * kGemvChunk; k0 < K; k0 += 32 * kGemvChunk) {
      const uint4 raw = __ldcs(reinterpret_cast<const uint4*>(B + (row0 + k0) / 2));
      const float m = block_scale(scales, (row0 + k0) >> log2_blocksize);
      const uint8_t* bytes = reinterpret_cast<const uint8_t*>(&raw);
      float w[kGemvChunk];
#pragma unroll
      for (int j = 0; j < kGemvChunk / 2; ++j) {
        const uint8_t hi = bytes[j] >> 4, lo = bytes[j] & 0xF;
        w[2 * j] = round_to<T>(dequantized_value(s_code[hi], hi, kReservedCode4bit, m));
        w[2 * j + 1] = round_to<T>(dequantized_value(s_code[lo], lo, kReservedCode4bit, m));
      }
#pragma unroll
      for (int r = 0; r < kGemvRows; ++r) {
        if (r < rows) {
          constexpr int kVec = 16 / sizeof(T);
          const T* a = A + int64_t(r) * K + k0;
#pragma unroll
          for (int c = 0; c < kGemvChunk / kVec; ++c) {
            float av[kVec];
            const uint4 ar = __ldg(reinterpret_cast<const uint4*>(a) + c);
            const T* e = reinterpret_cast<const T*>(&ar);
#pragma unroll
            for (int j = 0; j < kVec; ++j) av[j] = to_float(e[j]);
#pragma unroll
            for (int j = 0; j < kVec; ++j) acc[r] += av[j] * w[c * kVec + j];
          }
        }
      }
    }
  } else {
    // Any K: rows of W may start mid-byte and share bytes and blocks with their neighbours.
    for (int64_t k = lane; k < K; k += 32) {
      const int64_t i = row0 + k;
      const uint8_t byte = B[i / 2];
      const uint8_t q = (i & 1) ? (byte & 0xF) : (byte >> 4);
      const float m = block_scale(scales, i >> log2_blocksize);
      const float w = round_to<T>(dequantized_value(s_code[q], q, kReservedCode4bit, m));
#pragma unroll
      for (int r = 0; r < kGemvRows; ++r)
        if (r < rows) acc[r] += to_float(A[int64_t(r) * K + k]) * w;
    }
  }
  const float b = bias ? to_float(bias[feature]) : 0.f;
#pragma unroll
  for (int r = 0; r < kGemvRows; ++r) {
    if (r < rows) {
      const float s = warp_sum(acc[r]);
      if (lane == 0) out[int64_t(r) * N + feature] = from_float<T>(s + b);
    }
  }
}

template <typename T>
cudaError_t launch_gemv_4bit(const T* A, const uint8_t* B, const float* code, const BlockScales& scales,
                             const T* bias, T* out, int64_t M, int64_t N, int64_t K, int64_t blocksize,
                             cudaStream_t stream) {
  if (!is_supported_blocksize(kFormat4bit, blocksize)) return cudaErrorInvalidValue;
  if (M == 0 || N == 0) return cudaSuccess;
  const int log2_blocksize = log2_of(blocksize);
  if constexpr (!std::is_same_v<T, float>) {
    if (gemm_4bit_stream_fits(A, B, M, N, K, log2_blocksize))
      return launch_gemm_4bit_stream(A, B, code, scales, bias, out, M, N, K, log2_blocksize, stream);
    if (gemm_4bit_mma_fits(A, B, M, N, K))
      return launch_gemm_4bit_mma(A, B, code, scales, bias, out, M, N, K, log2_blocksize, stream);
  }
  const bool vector_ok = K % kGemvChunk == 0 && aligned16(A) && aligned16(B);
  const int64_t grid = (N + kGemvWarps - 1) / kGemvWarps;
  if (grid > 0x7fffffff) return cudaErrorInvalidValue;
  for (int64_t m0 = 0; m0 < M; m0 += kGemvRows) {
    const int rows = int(std::min<int64_t>(kGemvRows, M - m0));
    gemv_4bit_kernel<T><<<int(grid), kGemvWarps * 32, 0, stream>>>(A + m0 * K, B, code, scales, bias, out + m0 * N,
                                                                   rows, N, K, log2_blocksize, vector_ok);
    const cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  return cudaSuccess;
}

#define BNB_INSTANTIATE_GEMV_4BIT(T)                                                                   \
  template cudaError_t launch_gemv_4bit<T>(const T*, const uint8_t*, const float*, const BlockScales&, \
                                           const T*, T*, int64_t, int64_t, int64_t, int64_t, cudaStream_t);

}  // namespace bnb::cuda
