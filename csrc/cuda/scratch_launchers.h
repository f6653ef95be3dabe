// CUDA launchers in their CPU twins' shape (stream last) for the kernels that need device
// scratch: the scratch comes from torch's caching allocator on the current device, which
// CudaBackend::launch has made the op's, and on its current stream, so a call costs no
// cudaMalloc and no host synchronisation. Each scratch tensor is freed when its launcher
// returns: the caching allocator hands it out again only to work queued after ours.
#pragma once
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAFunctions.h>

#include <cstddef>
#include <cstdint>

#include "bnb/int8_cuda.h"
#include "bnb/quantiles_cuda.h"

namespace bnb::ops::with_scratch {

inline at::Tensor scratch(at::IntArrayRef size, c10::ScalarType dtype) {
  return at::empty(size, at::TensorOptions().dtype(dtype).device(c10::Device(c10::kCUDA, c10::cuda::current_device())));
}

inline c10::ScalarType scalar_type(DType dtype) {
  switch (dtype) {
    case DType::Float16: return c10::ScalarType::Half;
    case DType::BFloat16: return c10::ScalarType::BFloat16;
    case DType::Float32: break;
  }
  return c10::ScalarType::Float;
}

// The rows of the passes' histograms depend on how many CTAs the current device runs at once.
inline cudaError_t estimate_quantiles(DType dtype, const void* A, int64_t n, double offset, int num_quantiles,
                                      float* out, cudaStream_t stream) {
  const size_t bytes = cuda::estimate_quantiles_workspace_bytes(dtype, n);
  const at::Tensor workspace = scratch({int64_t(bytes)}, at::kByte);
  return cuda::estimate_quantiles(dtype, A, n, offset, num_quantiles, out, workspace.data_ptr(), bytes, stream);
}

// The CUDA kernel zeroes outlier columns from the list, so it needs one where the caller
// wants none and outliers are looked for.
inline cudaError_t int8_vectorwise_quant(DType dtype, const void* A, int64_t rows, int64_t cols, float threshold,
                                         int8_t* out, float* row_stats, bool* outlier_cols, int32_t* outlier_list,
                                         cudaStream_t stream) {
  at::Tensor list;
  if (outlier_list == nullptr && threshold > 0.f) {
    list = scratch({cuda::int8_outlier_scratch_size(cols)}, at::kInt);
    outlier_list = list.mutable_data_ptr<int32_t>();
  }
  return cuda::int8_vectorwise_quant(dtype, A, rows, cols, threshold, out, row_stats, outlier_cols, outlier_list,
                                     stream);
}

// cuBLASLt picks among more kernels with room for split-K partial sums.
constexpr int64_t kGemmWorkspaceBytes = 32 << 20;

inline cudaError_t int8_linear_matmul(const int8_t* A, const int8_t* B, int32_t* C, int64_t M, int64_t N, int64_t K,
                                      cudaStream_t stream) {
  at::Tensor workspace = scratch({kGemmWorkspaceBytes}, at::kByte);
  return cuda::int8_linear_matmul(A, B, C, M, N, K, workspace.mutable_data_ptr(), size_t(kGemmWorkspaceBytes),
                                  stream);
}

// The gathered weight columns take the output's dtype.
inline cudaError_t int8_mm_dequant_outliers(DType dtype, const int32_t* C, const float* row_stats,
                                            const float* col_stats, const void* bias, const void* X, const void* W,
                                            bool w_int8, const int32_t* outlier_list, int64_t M, int64_t N, int64_t K,
                                            void* out, cudaStream_t stream) {
  at::Tensor sub_BT = scratch({cuda::int8_outlier_fused_cols(K), N}, scalar_type(dtype));
  return cuda::int8_mm_dequant_outliers(dtype, C, row_stats, col_stats, bias, X, W, w_int8, outlier_list, M, N, K,
                                        out, sub_BT.mutable_data_ptr(), stream);
}

// The kernel choice, and so the workspace, depends on the current device; the default
// (cluster) kernel needs none.
inline cudaError_t int8_weight_linear(DType dtype, const void* A, const int8_t* CB, const float* SCB, const void* bias,
                                      int64_t M, int64_t N, int64_t K, void* out, cudaStream_t stream) {
  at::Tensor workspace;
  const int64_t floats = cuda::int8_weight_linear_workspace_floats(dtype, M, N, K);
  if (floats > 0) workspace = scratch({floats}, at::kFloat);
  float* ws = workspace.defined() ? workspace.mutable_data_ptr<float>() : nullptr;
  return cuda::int8_weight_linear(dtype, A, CB, SCB, bias, M, N, K, out, ws, stream);
}

}  // namespace bnb::ops::with_scratch
