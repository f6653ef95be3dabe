// CPU launchers for LLM.int8(): row-wise int8 quantization with outlier columns, the int8
// GEMM and its dequantization. Matrices are contiguous and row-major; 64-bit indexing.
#pragma once
#include <cstdint>
#include "bnb/dtype.h"

namespace bnb::cpu {

// Row-wise absmax quantization of A[rows, cols]: out = rint(A * 127 / row_stats).
// threshold > 0: values with |v| >= threshold are outliers; they are left out of the row
// statistics, their columns get outlier_cols[c] = 1 (0 elsewhere) and are zeroed in out.
// outlier_cols may be null when threshold <= 0. outlier_list (cols + 1 values, may be null;
// needs outlier_cols) receives the flagged columns as int8_outlier_list writes them.
void int8_vectorwise_quant(DType dtype, const void* A, int64_t rows, int64_t cols, float threshold,
                           int8_t* out, float* row_stats, bool* outlier_cols, int32_t* outlier_list = nullptr);

// The outlier column list of the flags above: list[0] = count, list[1 + i] = the i-th flagged
// column in ascending order, zeros after (list holds cols + 1 values).
void int8_outlier_list(const bool* outlier_cols, int64_t cols, int32_t* list);

// The same along columns: out_col = rint(A * 127 / col_stats); outlier values (|v| >= threshold)
// are left out of col_stats, and the columns flagged in outlier_cols (from the row pass) are zeroed.
void int8_colwise_quant(DType dtype, const void* A, int64_t rows, int64_t cols, float threshold,
                        const bool* outlier_cols, int8_t* out, float* col_stats);

// out (float32) = A * stats[row] / 127.
void int8_vectorwise_dequant(const int8_t* A, const float* stats, int64_t rows, int64_t cols, float* out);

// C[M, N] (int32) = A[M, K] x B[N, K]^T.
void int8_linear_matmul(const int8_t* A, const int8_t* B, int32_t* C, int64_t M, int64_t N, int64_t K);

// out[M, N] = C * row_stats[m] * col_stats[n] / 127^2 (+ bias[n]) (+ sum_j sub_A[m, j] * sub_B[n, j]),
// in `dtype`; bias, sub_A and sub_B (all of `dtype`) may be null; sub_* have `sub_k` columns.
void int8_mm_dequant(DType dtype, const int32_t* C, const float* row_stats, const float* col_stats,
                     const void* bias, const void* sub_A, const void* sub_B, int64_t sub_k, int64_t M,
                     int64_t N, void* out);

// int8_mm_dequant with the outlier product taken from the list: + sum over the listed columns c
// of X[m, c] * W[n, c], X [M, K] of `dtype`; W [N, K] of `dtype`, or int8 (w_int8) scaled by
// col_stats[n] / 127 with each step rounded to `dtype` (as torch's CB.to(dtype) * (SCB.to(dtype) / 127)).
void int8_mm_dequant_outliers(DType dtype, const int32_t* C, const float* row_stats, const float* col_stats,
                              const void* bias, const void* X, const void* W, bool w_int8, const int32_t* list,
                              int64_t M, int64_t N, int64_t K, void* out);

// out[M, N] = A[M, K] x (CB[N, K] * SCB[n] / 127)^T (+ bias), A, bias and out of `dtype`:
// 16-bit activations against the int8 weight, accumulated in float32.
void int8_weight_linear(DType dtype, const void* A, const int8_t* CB, const float* SCB, const void* bias,
                        int64_t M, int64_t N, int64_t K, void* out);

}  // namespace bnb::cpu
