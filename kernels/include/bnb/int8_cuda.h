// CUDA launchers for LLM.int8(). Device pointers, row-major contiguous matrices, 64-bit
// indexing; work is queued on `stream`, nothing synchronises with the host. Each returns
// the launch status. Semantics, names and argument order are those of bnb/int8_cpu.h, with
// the stream last; launchers that need device scratch take it just before the stream.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>
#include "bnb/dtype.h"

namespace bnb::cuda {

// The outlier column list: int32 of (cols + 1) values, [count, ascending column indices, zeros].
inline int64_t int8_outlier_scratch_size(int64_t cols) { return cols + 1; }

// One pass over A finds row_stats, quantizes and flags outlier columns; the flagged columns
// are then listed (`outlier_list`, int8_outlier_scratch_size(cols) values, in ascending order;
// a count of 0 when threshold <= 0) and zeroed by a kernel that reads the list on the device
// (no host round trip). Unlike the CPU twin, the list is required when threshold > 0: the
// zeroing reads it.
cudaError_t int8_vectorwise_quant(DType dtype, const void* A, int64_t rows, int64_t cols, float threshold,
                                  int8_t* out, float* row_stats, bool* outlier_cols, int32_t* outlier_list,
                                  cudaStream_t stream);
cudaError_t int8_colwise_quant(DType dtype, const void* A, int64_t rows, int64_t cols, float threshold,
                               const bool* outlier_cols, int8_t* out, float* col_stats, cudaStream_t stream);
cudaError_t int8_vectorwise_dequant(const int8_t* A, const float* stats, int64_t rows, int64_t cols, float* out,
                                    cudaStream_t stream);

// C[M, N] = A[M, K] x B[N, K]^T in int32: cuBLASLt's int8 tensor-core GEMM where it takes the
// shape, else a tiled kernel of ours. `workspace` (workspace_bytes) is for cuBLASLt.
cudaError_t int8_linear_matmul(const int8_t* A, const int8_t* B, int32_t* C, int64_t M, int64_t N, int64_t K,
                               void* workspace, size_t workspace_bytes, cudaStream_t stream);
// The tiled kernel alone (tests compare both paths).
cudaError_t int8_linear_matmul_fallback(const int8_t* A, const int8_t* B, int32_t* C, int64_t M, int64_t N,
                                        int64_t K, cudaStream_t stream);

cudaError_t int8_mm_dequant(DType dtype, const int32_t* C, const float* row_stats, const float* col_stats,
                            const void* bias, const void* sub_A, const void* sub_B, int64_t sub_k, int64_t M,
                            int64_t N, void* out, cudaStream_t stream);

// int8_mm_dequant with the outlier product read on the device: + sum over the listed columns c
// (outlier_list as written by int8_vectorwise_quant) of X[m, c] * W[n, c], where W is 16-bit
// (w_int8 false) or an int8 weight scaled by col_stats[n] / 127 (rounded to the dtype as
// torch does). `sub_BT` is scratch of int8_outlier_fused_cols(K) x N values of the dtype:
// that many columns are gathered once and fused; any further ones are read in place.
inline int64_t int8_outlier_fused_cols(int64_t K) { return K < 64 ? K : 64; }
cudaError_t int8_mm_dequant_outliers(DType dtype, const int32_t* C, const float* row_stats, const float* col_stats,
                                     const void* bias, const void* X, const void* W, bool w_int8,
                                     const int32_t* outlier_list, int64_t M, int64_t N, int64_t K, void* out,
                                     void* sub_BT, cudaStream_t stream);

// A[M, K] x (CB * SCB / 127)^T + bias: streams the int8 weight once per 16 rows of A.
// fp16/bf16 run on tensor cores: on sm_90 with at most 32 rows of A, the cluster kernel
// (split over K, reduced in distributed shared memory, no workspace); otherwise split over K
// with partial sums in `workspace` (int8_weight_linear_workspace_floats() float32 values, 0
// where none is needed; ask with the output's device current, the choice depends on it).
// float32 runs on CUDA cores.
int64_t int8_weight_linear_workspace_floats(DType dtype, int64_t M, int64_t N, int64_t K);
cudaError_t int8_weight_linear(DType dtype, const void* A, const int8_t* CB, const float* SCB, const void* bias,
                               int64_t M, int64_t N, int64_t K, void* out, float* workspace, cudaStream_t stream);

}  // namespace bnb::cuda
