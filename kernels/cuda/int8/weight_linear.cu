// int8_weight_linear: picks the kernel family for a call from the dtype, the shape and the
// device's cached capabilities (weight_linear.cuh lists the families).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "bnb/int8_cuda.h"
#include "weight_linear.cuh"

namespace bnb::cuda {

namespace {

template <typename T>
cudaError_t tensor_cores(const void* A, const int8_t* CB, const float* SCB, const void* bias, int64_t M, int64_t N,
                         int64_t K, void* out, float* workspace, cudaStream_t stream) {
  const T* a = static_cast<const T*>(A);
  const T* b = static_cast<const T*>(bias);
  T* o = static_cast<T*>(out);
  if (weight_linear_cluster_applies(M, N, K)) return launch_weight_linear_cluster<T>(a, CB, SCB, b, M, N, K, o, stream);
  return launch_weight_linear_splitk<T>(a, CB, SCB, b, M, N, K, o, workspace, stream);
}

}  // namespace

int64_t int8_weight_linear_workspace_floats(DType dtype, int64_t M, int64_t N, int64_t K) {
  if (dtype == DType::Float32 || M == 0 || N == 0 || K == 0) return 0;
  if (weight_linear_cluster_applies(M, N, K)) return 0;
  return weight_linear_splitk_workspace_floats(M, N, K);
}

cudaError_t int8_weight_linear(DType dtype, const void* A, const int8_t* CB, const float* SCB, const void* bias,
                               int64_t M, int64_t N, int64_t K, void* out, float* workspace, cudaStream_t stream) {
  if (M == 0 || N == 0) return cudaSuccess;
  switch (dtype) {
    case DType::Float32:
      return launch_weight_linear_cuda_cores(static_cast<const float*>(A), CB, SCB, static_cast<const float*>(bias), M,
                                             N, K, static_cast<float*>(out), stream);
    case DType::Float16:
      return tensor_cores<__half>(A, CB, SCB, bias, M, N, K, out, workspace, stream);
    case DType::BFloat16:
      return tensor_cores<__nv_bfloat16>(A, CB, SCB, bias, M, N, K, out, workspace, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace bnb::cuda
