// Quantization with one scale for the whole tensor (quantize / dequantize) or none
// (quantize_no_absmax / dequantize_no_absmax). The scale is read on the device, so the
// absmax found by absmax_kernel never travels to the host.
#include <algorithm>

#include "bnb/quantize_cuda.h"
#include "../common/atomics.cuh"
#include "../common/launch.cuh"
#include "../common/reduce.cuh"
#include "../common/quant.cuh"

namespace bnb::cuda {

namespace {

constexpr int kPerThread = 8;
constexpr int kTile = kThreads * kPerThread;

template <typename T>
__global__ void __launch_bounds__(kThreads) absmax_kernel(const T* __restrict__ A, int64_t n, float* absmax) {
  float m = 0.f;
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < n; i += int64_t(gridDim.x) * kThreads)
    m = fmaxf(m, fabsf(to_float(A[i])));
  m = warp_max(m);
  __shared__ float s_warp[kThreads / 32];
  if (threadIdx.x % 32 == 0) s_warp[threadIdx.x / 32] = m;
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int w = 1; w < kThreads / 32; ++w) m = fmaxf(m, s_warp[w]);
    atomic_max_nonneg(absmax, m);
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSM)
quantize_scaled_kernel(const T* __restrict__ A, const float* __restrict__ code, const float* __restrict__ scale,
                       uint8_t* __restrict__ out, int64_t n) {
  extern __shared__ float table[];
  fill_replicated_midpoints(code, table);
  const float* lane_table = table + threadIdx.x % kLanes;
  const float middle = middle_pivot(lane_table);
  const float s = scale ? *scale : 1.f;
  // divided by the scale (IEEE), ties to the even code: the reference library's codes, bit for
  // bit (see the CPU twin); a zero scale gives the code nearest 0
  const float d = s > 0.f ? s : __int_as_float(0x7f800000);
  const bool vector_ok = aligned16(A) && aligned16(out);
  const int64_t tiles = (n + kTile - 1) / kTile;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t base = tile * kTile + int64_t(threadIdx.x) * kPerThread;
    if (base >= n) continue;
    const bool full = vector_ok && (tile + 1) * kTile <= n;
    float v[kPerThread];
    uint8_t q[kPerThread];
    if (full) {
      load_vec<T, kPerThread>(A + base, v);
#pragma unroll
      for (int j = 0; j < kPerThread; ++j) q[j] = nearest_code_even_tie(lane_table, middle, __fdiv_rn(v[j], d));
      store_codes<kPerThread>(out + base, q);
    } else {
      for (int j = 0; j < kPerThread && base + j < n; ++j)
        out[base + j] = nearest_code_even_tie(lane_table, middle, __fdiv_rn(to_float(A[base + j]), d));
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSM)
dequantize_scaled_kernel(const uint8_t* __restrict__ A, const float* __restrict__ code,
                         const float* __restrict__ scale, T* __restrict__ out, int64_t n) {
  extern __shared__ float table[];
  fill_replicated_code(code, table);
  const int lane = threadIdx.x % kLanes;
  const float s = scale ? *scale : 1.f;
  const bool vector_ok = aligned16(A) && aligned16(out);
  const int64_t tiles = (n + kTile - 1) / kTile;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t base = tile * kTile + int64_t(threadIdx.x) * kPerThread;
    if (base >= n) continue;
    const bool full = vector_ok && (tile + 1) * kTile <= n;
    if (full) {
      uint8_t q[kPerThread];
      float v[kPerThread];
      load_codes<kPerThread>(A + base, q);
#pragma unroll
      for (int j = 0; j < kPerThread; ++j) v[j] = table[q[j] * kLanes + lane] * s;
      store_vec<T, kPerThread>(out + base, v);
    } else {
      for (int j = 0; j < kPerThread && base + j < n; ++j)
        out[base + j] = from_float<T>(table[A[base + j] * kLanes + lane] * s);
    }
  }
}

template <typename T>
cudaError_t launch_absmax(const T* A, int64_t n, float* absmax, cudaStream_t stream) {
  cudaError_t err = cudaMemsetAsync(absmax, 0, sizeof(float), stream);
  if (err != cudaSuccess || n == 0) return err;
  const auto kernel = absmax_kernel<T>;
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  const int64_t grid = std::min<int64_t>(blocks, persistent_grid((const void*)kernel, kThreads, 0));
  kernel<<<int(grid), kThreads, 0, stream>>>(A, n, absmax);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_quantize_scaled(const T* A, const float* code, const float* scale, uint8_t* out, int64_t n,
                                   cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const auto kernel = quantize_scaled_kernel<T>;
  const int smem = (kCodeSize - 1) * kLanes * sizeof(float);
  const int64_t grid = std::min<int64_t>((n + kTile - 1) / kTile, persistent_grid((const void*)kernel, kThreads, smem));
  kernel<<<int(grid), kThreads, smem, stream>>>(A, code, scale, out, n);
  return cudaGetLastError();
}

template <typename T>
cudaError_t launch_dequantize_scaled(const uint8_t* A, const float* code, const float* scale, T* out, int64_t n,
                                     cudaStream_t stream) {
  if (n == 0) return cudaSuccess;
  const auto kernel = dequantize_scaled_kernel<T>;
  const int smem = kReplicatedTableBytes;
  const int64_t grid = std::min<int64_t>((n + kTile - 1) / kTile, persistent_grid((const void*)kernel, kThreads, smem));
  kernel<<<int(grid), kThreads, smem, stream>>>(A, code, scale, out, n);
  return cudaGetLastError();
}

// Calls f(static_cast<T*>(nullptr)) with the device type of `dtype`.
template <typename F> cudaError_t dispatch(DType dtype, F&& f) {
  switch (dtype) {
    case DType::Float32: return f(static_cast<float*>(nullptr));
    case DType::Float16: return f(static_cast<__half*>(nullptr));
    case DType::BFloat16: return f(static_cast<__nv_bfloat16*>(nullptr));
  }
  return cudaErrorInvalidValue;
}

}  // namespace

cudaError_t absmax(DType dtype, const void* A, int64_t n, float* out, cudaStream_t stream) {
  return dispatch(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    return launch_absmax(static_cast<const T*>(A), n, out, stream);
  });
}

cudaError_t quantize_scaled(DType dtype, const void* A, const float* code, const float* scale, uint8_t* out,
                            int64_t n, cudaStream_t stream) {
  return dispatch(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    return launch_quantize_scaled(static_cast<const T*>(A), code, scale, out, n, stream);
  });
}

cudaError_t dequantize_scaled(DType dtype, const uint8_t* A, const float* code, const float* scale, void* out,
                              int64_t n, cudaStream_t stream) {
  return dispatch(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    return launch_dequantize_scaled(A, code, scale, static_cast<T*>(out), n, stream);
  });
}

}  // namespace bnb::cuda
