// The kernel families behind int8_weight_linear (bnb/int8_cuda.h), each in its own files,
// and what the dispatcher (weight_linear.cu) asks them to choose between them:
//   cluster     fp16/bf16 on tensor cores, sm_90: one launch, partial sums added in the
//               distributed shared memory of a thread-block cluster (the fastest where it
//               applies);
//   split-K     fp16/bf16 on tensor cores, any shape and device: partial sums of 512-wide
//               slices of K in a float32 workspace, added by a second kernel;
//   CUDA cores  float32 activations.
// Pointers and sizes as in int8_weight_linear; M, N > 0.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

namespace bnb::cuda {

// Whether the cluster kernel takes a call: sm_90 code on an sm_90 device, at most 32 rows of
// A, and a slice of K that fits its shared memory.
bool weight_linear_cluster_applies(int64_t M, int64_t N, int64_t K);
template <typename T>
cudaError_t launch_weight_linear_cluster(const T* A, const int8_t* CB, const float* SCB, const T* bias, int64_t M,
                                         int64_t N, int64_t K, T* out, cudaStream_t stream);

// Float32 values of the split-K workspace.
int64_t weight_linear_splitk_workspace_floats(int64_t M, int64_t N, int64_t K);
template <typename T>
cudaError_t launch_weight_linear_splitk(const T* A, const int8_t* CB, const float* SCB, const T* bias, int64_t M,
                                        int64_t N, int64_t K, T* out, float* workspace, cudaStream_t stream);

cudaError_t launch_weight_linear_cuda_cores(const float* A, const int8_t* CB, const float* SCB, const float* bias,
                                            int64_t M, int64_t N, int64_t K, float* out, cudaStream_t stream);

}  // namespace bnb::cuda
