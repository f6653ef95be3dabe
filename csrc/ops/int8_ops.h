// The LLM.int8() ops, written once over a backend (CPU or CUDA) that supplies the launchers:
// argument checks, contiguity and output allocation here, arithmetic in kernels/.
#pragma once
#include <ATen/ops/empty.h>
#include <cmath>
#include <optional>
#include <tuple>
#include <vector>

#include "checks.h"

namespace bnb::ops {

namespace int8_detail {

inline void check_matrix_like(const at::Tensor& t, const char* op, const char* arg) {
  BNB_CHECK_VALUE(t.dim() >= 1, op, ": ", arg, " must have at least one dimension (rows x columns), got a scalar");
}

// Rows of a [..., cols] tensor seen as a matrix (also when cols is 0).
inline int64_t leading_rows(const at::Tensor& t) {
  int64_t r = 1;
  for (int64_t d = 0; d + 1 < t.dim(); ++d) r *= t.size(d);
  return r;
}

inline void check_vector(const at::Tensor& t, int64_t n, c10::ScalarType dtype, const at::Tensor& like, const char* op,
                         const char* arg, const char* like_arg) {
  check_dtype(t, dtype, op, arg);
  check_same_device(t, like, op, arg, like_arg);
  BNB_CHECK_VALUE(t.numel() == n, op, ": ", arg, " must hold ", n, " values, got ", t.numel());
}

// The optional bias of N values in `dtype`, checked and made contiguous (undefined if absent).
inline at::Tensor checked_bias(const std::optional<at::Tensor>& bias, int64_t n, c10::ScalarType dtype,
                               const at::Tensor& like, const char* op) {
  if (!bias) return at::Tensor();
  check_vector(*bias, n, dtype, like, op, "bias", "A");
  return bias->contiguous();
}

// The int32 product A [..., N] of the dequantize ops and its row and column statistics;
// returns {M, N}.
inline std::pair<int64_t, int64_t> check_int32_product(const at::Tensor& A, const at::Tensor& row_stats,
                                                       const at::Tensor& col_stats, const char* op) {
  check_dtype(A, at::kInt, op, "A");
  check_matrix_like(A, op, "A");
  const int64_t N = A.size(-1), M = leading_rows(A);
  check_vector(row_stats, M, at::kFloat, A, op, "row_stats", "A");
  check_vector(col_stats, N, at::kFloat, A, op, "col_stats", "A");
  return {M, N};
}

inline std::vector<int64_t> with_last(const at::Tensor& t, int64_t last) {
  std::vector<int64_t> s(t.sizes().begin(), t.sizes().end());
  s.back() = last;
  return s;
}

// An outlier list on the CPU is checked value by value. On the GPU reading it would wait for
// the device; the kernel reads a bad one without leaving X and W instead (its columns outside
// [0, K) give NaN: kernels/cuda/int8/dequant.cu).
inline void check_outlier_list(const at::Tensor& list, int64_t K, const char* op) {
  if (!list.is_cpu()) return;
  const int32_t* l = list.const_data_ptr<int32_t>();
  BNB_CHECK_VALUE(l[0] >= 0 && l[0] <= K, op, ": outlier_list[0] (the number of outlier columns) must be in [0, ", K,
                  "], got ", l[0]);
  for (int64_t j = 1; j <= l[0]; ++j)
    BNB_CHECK_VALUE(l[j] >= 0 && l[j] < K, op, ": outlier_list[", j, "] must be a column of X in [0, ", K, "), got ",
                    l[j]);
}

// The outlier threshold: a number (0 or below: none). NaN would flag no value as regular,
// so every row would quantize to zeros with a zero scale.
inline void check_threshold(double threshold, const char* op) {
  BNB_CHECK_VALUE(!std::isnan(threshold), op, ": threshold must be a number (0 for no outliers), got nan");
}

}  // namespace int8_detail

// Row-wise quantization with the outlier columns flagged in a bool mask [cols].
template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor> row_quant_with_mask(const at::Tensor& A, double threshold,
                                                                   const char* op) {
  using namespace int8_detail;
  const DType dt = kernel_dtype(A.scalar_type(), op, "A");
  check_matrix_like(A, op, "A");
  check_threshold(threshold, op);
  const int64_t cols = A.size(-1), rows = leading_rows(A);
  const at::Tensor a = A.contiguous();
  at::Tensor out = at::empty(A.sizes(), A.options().dtype(at::kChar));
  at::Tensor stats = at::empty({rows}, A.options().dtype(at::kFloat));
  at::Tensor outliers = at::empty({cols}, A.options().dtype(at::kBool));
  Backend::launch(A, Backend::int8_vectorwise_quant, dt, a.const_data_ptr(), rows, cols, float(threshold),
                  out.mutable_data_ptr<int8_t>(), stats.mutable_data_ptr<float>(), outliers.mutable_data_ptr<bool>(),
                  /*outlier_list=*/nullptr);
  return {out, stats, outliers};
}

// The int64 indices of the flagged columns (None without a threshold), as the reference
// library's schema returns them; finding how many waits for the device (bnb.matmul uses
// int8_vectorwise_quant_outliers, whose list stays there).
inline std::optional<at::Tensor> outlier_columns(const at::Tensor& mask, double threshold) {
  if (!(threshold > 0.0)) return std::nullopt;
  return mask.nonzero().view({-1});
}

template <class Backend>
std::tuple<at::Tensor, at::Tensor, std::optional<at::Tensor>> int8_vectorwise_quant(const at::Tensor& A,
                                                                                    double threshold) {
  at::Tensor out, stats, mask;
  std::tie(out, stats, mask) = row_quant_with_mask<Backend>(A, threshold, "int8_vectorwise_quant");
  return {out, stats, outlier_columns(mask, threshold)};
}

// int8_vectorwise_quant with the outlier columns as a list that stays on the device: int32
// [cols + 1] = [count, ascending column indices, zeros...] (count 0 when threshold <= 0).
template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor> int8_vectorwise_quant_outliers(const at::Tensor& A,
                                                                             double threshold) {
  using namespace int8_detail;
  constexpr const char* op = "int8_vectorwise_quant_outliers";
  const DType dt = kernel_dtype(A.scalar_type(), op, "A");
  check_matrix_like(A, op, "A");
  check_threshold(threshold, op);
  const int64_t cols = A.size(-1), rows = leading_rows(A);
  BNB_CHECK_VALUE(cols < (int64_t(1) << 31), op, ": A's last dimension must be below 2^31, got ", cols);
  const at::Tensor a = A.contiguous();
  at::Tensor out = at::empty(A.sizes(), A.options().dtype(at::kChar));
  at::Tensor stats = at::empty({rows}, A.options().dtype(at::kFloat));
  at::Tensor flags = at::empty({cols}, A.options().dtype(at::kBool));
  at::Tensor list = at::empty({cols + 1}, A.options().dtype(at::kInt));
  Backend::launch(A, Backend::int8_vectorwise_quant, dt, a.const_data_ptr(), rows, cols, float(threshold),
                  out.mutable_data_ptr<int8_t>(), stats.mutable_data_ptr<float>(), flags.mutable_data_ptr<bool>(),
                  list.mutable_data_ptr<int32_t>());
  return {out, stats, list};
}

template <class Backend>
at::Tensor int8_vectorwise_dequant(const at::Tensor& A, const at::Tensor& stats) {
  using namespace int8_detail;
  constexpr const char* op = "int8_vectorwise_dequant";
  check_dtype(A, at::kChar, op, "A");
  check_matrix_like(A, op, "A");
  const int64_t cols = A.size(-1), rows = leading_rows(A);
  check_vector(stats, rows, at::kFloat, A, op, "stats", "A");
  const at::Tensor a = A.contiguous(), s = stats.contiguous();
  at::Tensor out = at::empty(A.sizes(), A.options().dtype(at::kFloat));
  Backend::launch(A, Backend::int8_vectorwise_dequant, a.const_data_ptr<int8_t>(), s.const_data_ptr<float>(), rows,
                  cols, out.mutable_data_ptr<float>());
  return out;
}

template <class Backend>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, std::optional<at::Tensor>> int8_double_quant(
    const at::Tensor& A, double threshold) {
  using namespace int8_detail;
  constexpr const char* op = "int8_double_quant";
  const DType dt = kernel_dtype(A.scalar_type(), op, "A");
  check_matrix_like(A, op, "A");
  const int64_t cols = A.size(-1), rows = leading_rows(A);
  const at::Tensor a = A.contiguous();
  at::Tensor out_row, row_stats, outliers;
  std::tie(out_row, row_stats, outliers) = row_quant_with_mask<Backend>(a, threshold, op);
  at::Tensor out_col = at::empty(A.sizes(), A.options().dtype(at::kChar));
  at::Tensor col_stats = at::empty({cols}, A.options().dtype(at::kFloat));
  Backend::launch(A, Backend::int8_colwise_quant, dt, a.const_data_ptr(), rows, cols, float(threshold),
                  outliers.const_data_ptr<bool>(), out_col.mutable_data_ptr<int8_t>(),
                  col_stats.mutable_data_ptr<float>());
  return {out_row, out_col, row_stats, col_stats, outlier_columns(outliers, threshold)};
}

template <class Backend>
at::Tensor int8_linear_matmul(const at::Tensor& A, const at::Tensor& B) {
  using namespace int8_detail;
  constexpr const char* op = "int8_linear_matmul";
  check_dtype(A, at::kChar, op, "A");
  check_dtype(B, at::kChar, op, "B");
  check_matrix_like(A, op, "A");
  BNB_CHECK_VALUE(B.dim() == 2, op, ": B must be a 2-D [N, K] weight, got ", B.dim(), " dimensions");
  check_same_device(B, A, op, "B", "A");
  BNB_CHECK_VALUE(A.size(-1) == B.size(1), op, ": A's last dimension (K = ", A.size(-1),
                  ") must equal B's second dimension (", B.size(1), "); B is [N, K]");
  const int64_t M = leading_rows(A), N = B.size(0), K = B.size(1);
  BNB_CHECK_VALUE(K <= kInt8MaxK, op, ": K = ", K, " is more than the int32 sum of int8 products can hold without "
                  "wrapping (K <= ", kInt8MaxK, "); split the product along K");
  const at::Tensor a = A.contiguous(), b = B.contiguous();
  at::Tensor C = at::empty(with_last(A, N), A.options().dtype(at::kInt));
  Backend::launch(A, Backend::int8_linear_matmul, a.const_data_ptr<int8_t>(), b.const_data_ptr<int8_t>(),
                  C.mutable_data_ptr<int32_t>(), M, N, K);
  return C;
}

template <class Backend>
void int8_linear_matmul_out(const at::Tensor& A, const at::Tensor& B, at::Tensor& out) {
  copy_to_out(int8_linear_matmul<Backend>(A, B), out, "int8_linear_matmul.out");
}

// A * row_stats * col_stats / 127^2 (+ bias) in `dtype` (default float16); a bias of another
// float dtype is cast to it.
template <class Backend>
at::Tensor int8_mm_dequant(const at::Tensor& A, const at::Tensor& row_stats, const at::Tensor& col_stats,
                           std::optional<c10::ScalarType> dtype_opt, const std::optional<at::Tensor>& bias) {
  using namespace int8_detail;
  constexpr const char* op = "int8_mm_dequant";
  const c10::ScalarType dtype = dtype_opt.value_or(at::kHalf);
  const auto [M, N] = check_int32_product(A, row_stats, col_stats, op);
  const DType dt = kernel_dtype(dtype, op, "dtype");
  std::optional<at::Tensor> cast_bias = bias;
  if (bias && bias->scalar_type() != dtype) {
    kernel_dtype(bias->scalar_type(), op, "bias");
    cast_bias = bias->to(dtype);
  }
  const at::Tensor b = checked_bias(cast_bias, N, dtype, A, op);
  const at::Tensor a = A.contiguous(), rs = row_stats.contiguous(), cs = col_stats.contiguous();
  at::Tensor out = at::empty(A.sizes(), A.options().dtype(dtype));
  Backend::launch(A, Backend::int8_mm_dequant, dt, a.const_data_ptr<int32_t>(), rs.const_data_ptr<float>(),
                  cs.const_data_ptr<float>(), b.defined() ? b.const_data_ptr() : nullptr, /*sub_A=*/nullptr,
                  /*sub_B=*/nullptr, /*sub_k=*/int64_t(0), M, N, out.mutable_data_ptr());
  return out;
}

// int8_mm_dequant with the outlier product read from the device list (no host round trip):
// + sum over the listed columns c of X[m, c] * W[n, c]; W is the 16-bit weight (of `dtype`) or
// the int8 one, scaled by col_stats / 127.
template <class Backend>
at::Tensor int8_mm_dequant_outliers(const at::Tensor& A, const at::Tensor& row_stats, const at::Tensor& col_stats,
                                    const std::optional<at::Tensor>& bias, const at::Tensor& X, const at::Tensor& W,
                                    const at::Tensor& outlier_list, c10::ScalarType dtype) {
  using namespace int8_detail;
  constexpr const char* op = "int8_mm_dequant_outliers";
  const auto [M, N] = check_int32_product(A, row_stats, col_stats, op);
  const DType dt = kernel_dtype(dtype, op, "dtype");
  const at::Tensor b = checked_bias(bias, N, dtype, A, op);
  check_dtype(X, dtype, op, "X");
  check_same_device(X, A, op, "X", "A");
  check_matrix_like(X, op, "X");
  BNB_CHECK_VALUE(leading_rows(X) == M, op, ": X must have the ", M, " rows of A, got shape ", X.sizes());
  const int64_t K = X.size(-1);
  BNB_CHECK_VALUE(W.dim() == 2 && W.size(0) == N && W.size(1) == K, op, ": W must be [", N, ", ", K, "], got ", W.sizes());
  BNB_CHECK_TYPE(W.scalar_type() == dtype || W.scalar_type() == at::kChar, op, ": W must be int8 or ", dtype, ", got ",
                 W.scalar_type());
  check_same_device(W, A, op, "W", "A");
  check_vector(outlier_list, K + 1, at::kInt, A, op, "outlier_list", "A");
  const at::Tensor a = A.contiguous(), rs = row_stats.contiguous(), cs = col_stats.contiguous(), x = X.contiguous(),
                   w = W.contiguous(), list = outlier_list.contiguous();
  check_outlier_list(list, K, op);
  at::Tensor out = at::empty(A.sizes(), A.options().dtype(dtype));
  Backend::launch(x, Backend::int8_mm_dequant_outliers, dt, a.const_data_ptr<int32_t>(), rs.const_data_ptr<float>(),
                  cs.const_data_ptr<float>(), b.defined() ? b.const_data_ptr() : nullptr, x.const_data_ptr(),
                  w.const_data_ptr(), w.scalar_type() == at::kChar, list.const_data_ptr<int32_t>(), M, N, K,
                  out.mutable_data_ptr());
  return out;
}

template <class Backend>
at::Tensor int8_weight_linear(const at::Tensor& A, const at::Tensor& CB, const at::Tensor& SCB,
                              const std::optional<at::Tensor>& bias) {
  using namespace int8_detail;
  constexpr const char* op = "int8_weight_linear";
  const DType dt = kernel_dtype(A.scalar_type(), op, "A");
  check_matrix_like(A, op, "A");
  check_dtype(CB, at::kChar, op, "CB");
  BNB_CHECK_VALUE(CB.dim() == 2, op, ": CB must be a 2-D [N, K] int8 weight, got ", CB.dim(), " dimensions");
  check_same_device(CB, A, op, "CB", "A");
  BNB_CHECK_VALUE(A.size(-1) == CB.size(1), op, ": A's last dimension (K = ", A.size(-1),
                  ") must equal the weight's second dimension (", CB.size(1), "); the weight is [N, K]");
  const int64_t M = leading_rows(A), N = CB.size(0), K = CB.size(1);
  check_vector(SCB, N, at::kFloat, A, op, "SCB", "A");
  const at::Tensor b = checked_bias(bias, N, A.scalar_type(), A, op);
  const at::Tensor a = A.contiguous(), w = CB.contiguous(), s = SCB.contiguous();
  at::Tensor out = at::empty(with_last(A, N), A.options());
  Backend::launch(A, Backend::int8_weight_linear, dt, a.const_data_ptr(), w.const_data_ptr<int8_t>(),
                  s.const_data_ptr<float>(), b.defined() ? b.const_data_ptr() : nullptr, M, N, K,
                  out.mutable_data_ptr());
  return out;
}

// Registers every int8 op of this file for one dispatch key.
#define BNB_REGISTER_INT8_OPS(m, Backend)                                           \
  m.impl("int8_vectorwise_quant", &bnb::ops::int8_vectorwise_quant<Backend>);     \
  m.impl("int8_vectorwise_dequant", &bnb::ops::int8_vectorwise_dequant<Backend>); \
  m.impl("int8_vectorwise_quant_outliers", &bnb::ops::int8_vectorwise_quant_outliers<Backend>); \
  m.impl("int8_mm_dequant_outliers", &bnb::ops::int8_mm_dequant_outliers<Backend>); \
  m.impl("int8_double_quant", &bnb::ops::int8_double_quant<Backend>);             \
  m.impl("int8_linear_matmul", &bnb::ops::int8_linear_matmul<Backend>);           \
  m.impl("int8_linear_matmul.out", &bnb::ops::int8_linear_matmul_out<Backend>);   \
  m.impl("int8_mm_dequant", &bnb::ops::int8_mm_dequant<Backend>);                 \
  m.impl("int8_weight_linear", &bnb::ops::int8_weight_linear<Backend>);

}  // namespace bnb::ops
