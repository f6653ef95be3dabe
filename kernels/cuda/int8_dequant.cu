// Dequantization of the int32 GEMM result with everything that follows it fused into the
// same pass: row and column scales, bias, and the 16-bit product of the few outlier columns
// (sub_A[M, k] x sub_B[N, k]^T), so the output is written once. Same arithmetic, in the same
// order and rounding, as the CPU kernel.
#include <algorithm>

#include "bnb/int8_cuda.h"
#include "int8_common.cuh"

namespace bnb::cuda {

namespace {

constexpr int kDequantThreads = 256;
constexpr int kPerThread = 4;  // one 16-byte load of int32

template <typename T>
__device__ __forceinline__ float dequant_one(int32_t c, float rs, float cs, const T* bias, const T* sa, const T* sb,
                                             int64_t sub_k, int64_t m, int64_t n) {
  float v = __fmul_rn(__fmul_rn(__fmul_rn(float(c), rs), cs), kInt8Inv127Sq);
  if (bias) v = __fadd_rn(v, to_float(bias[n]));
  for (int64_t j = 0; j < sub_k; ++j)
    v = __fadd_rn(v, __fmul_rn(to_float(sa[m * sub_k + j]), to_float(sb[n * sub_k + j])));
  return v;
}

template <typename T>
__global__ void __launch_bounds__(kDequantThreads)
mm_dequant_kernel(const int32_t* __restrict__ C, const float* __restrict__ row_stats,
                  const float* __restrict__ col_stats, const T* __restrict__ bias, const T* __restrict__ sub_A,
                  const T* __restrict__ sub_B, int64_t sub_k, int64_t M, int64_t N, T* __restrict__ out,
                  bool vector_ok) {
  constexpr int64_t kChunk = int64_t(kDequantThreads) * kPerThread;
  const int64_t chunks = (N + kChunk - 1) / kChunk;
  for (int64_t t = blockIdx.x; t < M * chunks; t += gridDim.x) {
    const int64_t m = t / chunks;
    const int64_t n = (t % chunks) * kChunk + int64_t(threadIdx.x) * kPerThread;
    if (n >= N) continue;
    const float rs = row_stats[m];
    const int64_t base = m * N + n;
    if (vector_ok && n + kPerThread <= N) {
      const int4 c = __ldcs(reinterpret_cast<const int4*>(C + base));  // read once
      const int32_t cv[4] = {c.x, c.y, c.z, c.w};
      T o[kPerThread];
#pragma unroll
      for (int j = 0; j < kPerThread; ++j)
        o[j] = from_float<T>(dequant_one(cv[j], rs, col_stats[n + j], bias, sub_A, sub_B, sub_k, m, n + j));
      if constexpr (sizeof(T) == 2) {
        uint2 raw;
        memcpy(&raw, o, 8);
        *reinterpret_cast<uint2*>(out + base) = raw;
      } else {
        uint4 raw;
        memcpy(&raw, o, 16);
        *reinterpret_cast<uint4*>(out + base) = raw;
      }
    } else {
      for (int j = 0; j < kPerThread && n + j < N; ++j)
        out[base + j] =
            from_float<T>(dequant_one(C[base + j], rs, col_stats[n + j], bias, sub_A, sub_B, sub_k, m, n + j));
    }
  }
}

template <typename T>
cudaError_t launch(const int32_t* C, const float* rs, const float* cs, const void* bias, const void* sa,
                   const void* sb, int64_t sub_k, int64_t M, int64_t N, void* out, cudaStream_t stream) {
  if (M == 0 || N == 0) return cudaSuccess;
  const auto aligned = [](const void* p, unsigned a) { return (reinterpret_cast<uintptr_t>(p) % a) == 0; };
  const bool vector_ok = N % kPerThread == 0 && aligned(C, 16) && aligned(out, kPerThread * sizeof(T));
  const int64_t chunks = (N + int64_t(kDequantThreads) * kPerThread - 1) / (int64_t(kDequantThreads) * kPerThread);
  const int64_t tiles = M * chunks;
  const int grid = int(std::min<int64_t>(tiles, int64_t(1) << 20));
  mm_dequant_kernel<T><<<grid, kDequantThreads, 0, stream>>>(C, rs, cs, static_cast<const T*>(bias),
                                                             static_cast<const T*>(sa), static_cast<const T*>(sb),
                                                             sub_k, M, N, static_cast<T*>(out), vector_ok);
  return cudaGetLastError();
}

}  // namespace

cudaError_t int8_mm_dequant(DType dtype, const int32_t* C, const float* row_stats, const float* col_stats,
                            const void* bias, const void* sub_A, const void* sub_B, int64_t sub_k, int64_t M,
                            int64_t N, void* out, cudaStream_t stream) {
  switch (dtype) {
    case DType::Float32: return launch<float>(C, row_stats, col_stats, bias, sub_A, sub_B, sub_k, M, N, out, stream);
    case DType::Float16: return launch<__half>(C, row_stats, col_stats, bias, sub_A, sub_B, sub_k, M, N, out, stream);
    case DType::BFloat16:
      return launch<__nv_bfloat16>(C, row_stats, col_stats, bias, sub_A, sub_B, sub_k, M, N, out, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace bnb::cuda
