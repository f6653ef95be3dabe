// Dequantization of the int32 GEMM result with everything that follows it fused into the
// same pass: row and column scales, bias, and the 16-bit product of the few outlier columns
// (sub_A[M, k] x sub_B[N, k]^T), so the output is written once. Same arithmetic, in the same
// order and rounding, as the CPU kernel.
#include <algorithm>

#include "bnb/int8_cuda.h"
#include "quantize_math.cuh"

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
      store4(out + base, o);
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
// The outlier list is device data that the op cannot check without waiting for the device, so
// it is read so that a bad one cannot reach outside X and W: the count clamped to [0, K], and
// a column outside [0, K) reads column 0 of W with a NaN activation (the output shows it).
__device__ __forceinline__ int64_t listed_count(const int32_t* list, int64_t K) {
  return max(int64_t(0), min(int64_t(list[0]), K));
}
__device__ __forceinline__ bool listed_ok(int32_t c, int64_t K) { return c >= 0 && int64_t(c) < K; }
__device__ __forceinline__ int64_t listed_column(int32_t c, int64_t K) { return listed_ok(c, K) ? c : 0; }

template <typename T>
__global__ void gather_outlier_weights_kernel(const void* __restrict__ W, bool w_int8,
                                              const float* __restrict__ col_stats,
                                              const int32_t* __restrict__ list, int64_t fused, int64_t N, int64_t K,
                                              T* __restrict__ sub_BT) {
  const int64_t count = min(listed_count(list, K), fused);
  for (int64_t n = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; n < N; n += int64_t(gridDim.x) * blockDim.x)
    for (int64_t j = 0; j < count; ++j)
      sub_BT[j * N + n] = from_float<T>(outlier_weight<T>(W, w_int8, col_stats, n, K, listed_column(list[1 + j], K)));
}

// Four consecutive values of the dtype as floats (a vector load where aligned).
template <typename T>
__device__ __forceinline__ void load4(const T* __restrict__ p, int width, bool vector_ok, float (&f)[kPerThread]) {
  if (vector_ok && width == kPerThread) {
    T e[kPerThread];
    if constexpr (sizeof(T) == 2) {
      const uint2 raw = *reinterpret_cast<const uint2*>(p);
      memcpy(e, &raw, 8);
    } else {
      const uint4 raw = *reinterpret_cast<const uint4*>(p);
      memcpy(e, &raw, 16);
    }
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) f[j] = to_float(e[j]);
  } else {
#pragma unroll
    for (int j = 0; j < kPerThread; ++j) f[j] = j < width ? to_float(p[j]) : 0.f;
  }
}

// mm_dequant_kernel with the outlier product taken from the device list. A block takes
// kOutlierRows rows x 1024 columns, so that each gathered weight value (sub_BT, read
// coalesced) serves 8 output rows, and the rows' outlier inputs X[m, c] sit in shared
// memory. The first `fused` listed columns come from sub_BT, any beyond from the weight in
// place (slow, but exact in the rare case of more outlier columns than were gathered).
// Summation order per output: scales, bias, then the columns in list order, as the CPU.
constexpr int kOutlierRows = 8;
constexpr int kMaxFused = 64;

template <typename T>
__global__ void __launch_bounds__(kDequantThreads)
mm_dequant_outliers_kernel(const int32_t* __restrict__ C, const float* __restrict__ row_stats,
                           const float* __restrict__ col_stats, const T* __restrict__ bias, const T* __restrict__ X,
                           const void* __restrict__ W, bool w_int8, const int32_t* __restrict__ list,
                           const T* __restrict__ sub_BT, int64_t fused, int64_t M, int64_t N, int64_t K,
                           T* __restrict__ out, bool vector_ok) {
  __shared__ float xs[kOutlierRows][kMaxFused];
  constexpr int64_t kChunk = int64_t(kDequantThreads) * kPerThread;
  const int64_t chunks = (N + kChunk - 1) / kChunk;
  const int64_t groups = (M + kOutlierRows - 1) / kOutlierRows;
  const int64_t count = listed_count(list, K);
  const int gathered = int(min(count, fused));
  for (int64_t tile = blockIdx.x; tile < groups * chunks; tile += gridDim.x) {
    const int64_t m0 = (tile / chunks) * kOutlierRows;
    const int64_t n = (tile % chunks) * kChunk + int64_t(threadIdx.x) * kPerThread;
    const int rows = int(min(int64_t(kOutlierRows), M - m0));
    const int width = int(max(int64_t(0), min(int64_t(kPerThread), N - n)));
    // The int32 products are requested first, so that their loads overlap the list -> X
    // chain below and its barrier.
    float v[kOutlierRows][kPerThread];
#pragma unroll
    for (int r = 0; r < kOutlierRows; ++r) {
      if (r >= rows || width == 0) continue;
      const int64_t m = m0 + r, base = m * N + n;
      const float rs = row_stats[m];
      if (vector_ok && width == kPerThread) {
        const int4 c = __ldcs(reinterpret_cast<const int4*>(C + base));  // read once
        const int32_t cv[4] = {c.x, c.y, c.z, c.w};
#pragma unroll
        for (int j = 0; j < kPerThread; ++j)
          v[r][j] = dequant_one<T>(cv[j], rs, col_stats[n + j], bias, nullptr, nullptr, 0, m, n + j);
      } else {
#pragma unroll
        for (int j = 0; j < kPerThread; ++j)
          v[r][j] = j < width ? dequant_one<T>(C[base + j], rs, col_stats[n + j], bias, nullptr, nullptr, 0, m, n + j)
                              : 0.f;
      }
    }
    __syncthreads();  // xs of the previous tile is no longer read
    for (int i = threadIdx.x; i < kOutlierRows * gathered; i += kDequantThreads) {
      const int r = i / gathered, j = i % gathered;
      const int32_t c = list[1 + j];
      xs[r][j] = r < rows ? (listed_ok(c, K) ? to_float(X[(m0 + r) * K + c]) : NAN) : 0.f;
    }
    __syncthreads();
    if (width == 0) continue;  // every thread still runs the same tiles (barriers above)
    for (int i = 0; i < gathered; ++i) {
      float w[kPerThread];
      load4(sub_BT + int64_t(i) * N + n, width, vector_ok, w);
#pragma unroll
      for (int r = 0; r < kOutlierRows; ++r) {
        const float x = xs[r][i];
#pragma unroll
        for (int j = 0; j < kPerThread; ++j) v[r][j] = __fadd_rn(v[r][j], __fmul_rn(x, w[j]));
      }
    }
    for (int64_t i = gathered; i < count; ++i) {
      const int32_t listed = list[1 + i];
      const int64_t c = listed_column(listed, K);
      float w[kPerThread];
#pragma unroll
      for (int j = 0; j < kPerThread; ++j) w[j] = j < width ? outlier_weight<T>(W, w_int8, col_stats, n + j, K, c) : 0.f;
#pragma unroll
      for (int r = 0; r < kOutlierRows; ++r) {
        const float x = r < rows ? (listed_ok(listed, K) ? to_float(X[(m0 + r) * K + c]) : NAN) : 0.f;
#pragma unroll
        for (int j = 0; j < kPerThread; ++j) v[r][j] = __fadd_rn(v[r][j], __fmul_rn(x, w[j]));
      }
    }
#pragma unroll
    for (int r = 0; r < kOutlierRows; ++r) {
      if (r >= rows) continue;
      const int64_t base = (m0 + r) * N + n;
      T o[kPerThread];
#pragma unroll
      for (int j = 0; j < kPerThread; ++j) o[j] = from_float<T>(v[r][j]);
      if (vector_ok && width == kPerThread) {
        store4(out + base, o);
      } else {
        for (int j = 0; j < width; ++j) out[base + j] = o[j];
      }
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
  const bool vector_ok = N % kPerThread == 0 && aligned(C, 16) && aligned(out, kPerThread * sizeof(T)) &&
                         aligned(sub_BT, kPerThread * sizeof(T));
  const int64_t chunks = (N + int64_t(kDequantThreads) * kPerThread - 1) / (int64_t(kDequantThreads) * kPerThread);
  const int64_t groups = (M + kOutlierRows - 1) / kOutlierRows;
  const int grid = int(std::min<int64_t>(groups * chunks, int64_t(1) << 20));
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
                                     const int32_t* outlier_list, int64_t M, int64_t N, int64_t K, void* out,
                                     void* sub_BT, cudaStream_t stream) {
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
