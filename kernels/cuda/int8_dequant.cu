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

// The outlier weight column c of row n in the output dtype: exact for a 16-bit weight; for
// an int8 one, CB * (SCB / 127) with each step rounded to the dtype, as torch computes
// CB.to(dtype) * (SCB.to(dtype) / 127).
template <typename T>
__device__ __forceinline__ float outlier_weight(const void* W, bool w_int8, const float* col_stats, int64_t n,
                                                int64_t K, int64_t c) {
  if (!w_int8) return to_float(static_cast<const T*>(W)[n * K + c]);
  const float s = to_float(from_float<T>(to_float(from_float<T>(col_stats[n])) / 127.0f));
  return to_float(from_float<T>(float(static_cast<const int8_t*>(W)[n * K + c]) * s));
}

// sub_BT[j, n] = weight column list[1 + j] of row n, for j < min(count, fused): gathered once
// (N x count scattered reads) so that the dequantization pass reads it coalesced.
template <typename T>
__global__ void gather_outlier_weights_kernel(const void* __restrict__ W, bool w_int8,
                                              const float* __restrict__ col_stats,
                                              const int32_t* __restrict__ list, int64_t fused, int64_t N, int64_t K,
                                              T* __restrict__ sub_BT) {
  const int64_t count = min(int64_t(list[0]), fused);
  for (int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; n < N; n += int64_t(gridDim.x) * blockDim.x)
    for (int64_t j = 0; j < count; ++j)
      sub_BT[j * N + n] = from_float<T>(outlier_weight<T>(W, w_int8, col_stats, n, K, list[1 + j]));
}

// mm_dequant_kernel with the outlier product taken from the device list: the first `fused`
// columns from sub_BT (coalesced), any beyond from the weight in place (slow, but exact in
// the rare case of more outlier columns than were gathered). X[m, c] is the same for the
// whole block row: a broadcast load.
template <typename T>
__global__ void __launch_bounds__(kDequantThreads)
mm_dequant_outliers_kernel(const int32_t* __restrict__ C, const float* __restrict__ row_stats,
                           const float* __restrict__ col_stats, const T* __restrict__ bias, const T* __restrict__ X,
                           const void* __restrict__ W, bool w_int8, const int32_t* __restrict__ list,
                           const T* __restrict__ sub_BT, int64_t fused, int64_t M, int64_t N, int64_t K,
                           T* __restrict__ out, bool vector_ok) {
  constexpr int64_t kChunk = int64_t(kDequantThreads) * kPerThread;
  const int64_t chunks = (N + kChunk - 1) / kChunk;
  const int64_t count = list[0];
  const int64_t gathered = min(count, fused);
  for (int64_t t = blockIdx.x; t < M * chunks; t += gridDim.x) {
    const int64_t m = t / chunks;
    const int64_t n = (t % chunks) * kChunk + int64_t(threadIdx.x) * kPerThread;
    if (n >= N) continue;
    const float rs = row_stats[m];
    const int64_t base = m * N + n;
    const int width = int(min(int64_t(kPerThread), N - n));
    float v[kPerThread];
    if (vector_ok && width == kPerThread) {
      const int4 c = __ldcs(reinterpret_cast<const int4*>(C + base));  // read once
      const int32_t cv[4] = {c.x, c.y, c.z, c.w};
#pragma unroll
      for (int j = 0; j < kPerThread; ++j) v[j] = dequant_one<T>(cv[j], rs, col_stats[n + j], bias, nullptr, nullptr, 0, m, n + j);
    } else {
      for (int j = 0; j < width; ++j)
        v[j] = dequant_one<T>(C[base + j], rs, col_stats[n + j], bias, nullptr, nullptr, 0, m, n + j);
    }
    for (int64_t i = 0; i < gathered; ++i) {
      const float x = to_float(X[m * K + list[1 + i]]);
      const T* w = sub_BT + i * N + n;
#pragma unroll
      for (int j = 0; j < kPerThread; ++j)
        if (j < width) v[j] = __fadd_rn(v[j], __fmul_rn(x, to_float(w[j])));
    }
    for (int64_t i = gathered; i < count; ++i) {
      const int64_t c = list[1 + i];
      const float x = to_float(X[m * K + c]);
#pragma unroll
      for (int j = 0; j < kPerThread; ++j)
        if (j < width) v[j] = __fadd_rn(v[j], __fmul_rn(x, outlier_weight<T>(W, w_int8, col_stats, n + j, K, c)));
    }
    T o[kPerThread];
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) o[j] = from_float<T>(v[j]);
    if (vector_ok && width == kPerThread) {
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
      for (int j = 0; j < width; ++j) out[base + j] = o[j];
    }
  }
}

template <typename T>
cudaError_t launch_outliers(const int32_t* C, const float* rs, const float* cs, const void* bias, const void* X,
                            const void* W, bool w_int8, const int32_t* list, void* sub_BT, int64_t M, int64_t N,
                            int64_t K, void* out, cudaStream_t stream) {
  if (M == 0 || N == 0) return cudaSuccess;
  const int64_t fused = int8_outlier_fused_cols(K);
  if (fused > 0) {
    const int grid = int(std::min<int64_t>((N + 255) / 256, 65535));
    gather_outlier_weights_kernel<T><<<grid, 256, 0, stream>>>(W, w_int8, cs, list, fused, N, K,
                                                               static_cast<T*>(sub_BT));
  }
  const auto aligned = [](const void* p, unsigned a) { return (reinterpret_cast<uintptr_t>(p) % a) == 0; };
  const bool vector_ok = N % kPerThread == 0 && aligned(C, 16) && aligned(out, kPerThread * sizeof(T));
  const int64_t chunks = (N + int64_t(kDequantThreads) * kPerThread - 1) / (int64_t(kDequantThreads) * kPerThread);
  const int grid = int(std::min<int64_t>(M * chunks, int64_t(1) << 20));
  mm_dequant_outliers_kernel<T><<<grid, kDequantThreads, 0, stream>>>(
      C, rs, cs, static_cast<const T*>(bias), static_cast<const T*>(X), W, w_int8, list,
      static_cast<const T*>(sub_BT), fused, M, N, K, static_cast<T*>(out), vector_ok);
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

cudaError_t int8_mm_dequant_outliers(DType dtype, const int32_t* C, const float* row_stats, const float* col_stats,
                                     const void* bias, const void* X, const void* W, bool w_int8,
                                     const int32_t* outlier_list, void* sub_BT, int64_t M, int64_t N, int64_t K,
                                     void* out, cudaStream_t stream) {
  switch (dtype) {
    case DType::Float32:
      return launch_outliers<float>(C, row_stats, col_stats, bias, X, W, w_int8, outlier_list, sub_BT, M, N, K, out,
                                    stream);
    case DType::Float16:
      return launch_outliers<__half>(C, row_stats, col_stats, bias, X, W, w_int8, outlier_list, sub_BT, M, N, K, out,
                                     stream);
    case DType::BFloat16:
      return launch_outliers<__nv_bfloat16>(C, row_stats, col_stats, bias, X, W, w_int8, outlier_list, sub_BT, M, N,
                                            K, out, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace bnb::cuda
