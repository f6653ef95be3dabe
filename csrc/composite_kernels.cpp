// Ops written as a composition of other ops (CompositeImplicitAutograd: every device, autograd
// and tracing see the ops they call, so they need no kernel or fake kernel of their own).
#include <torch/library.h>

#include <optional>

#include "ops/dispatch_handles.h"

namespace {

// int8_scaled_mm: int8 A[..., K] x B[N, K]^T, dequantized with the row and column statistics
// (+ bias), in `dtype` (default float16).
at::Tensor int8_scaled_mm(const at::Tensor& A, const at::Tensor& B, const at::Tensor& row_stats,
                          const at::Tensor& col_stats, const std::optional<at::Tensor>& bias,
                          std::optional<c10::ScalarType> dtype) {
  const at::Tensor C = bnb::ops::int8_linear_matmul_op().call(A, B);
  return bnb::ops::int8_mm_dequant_op().call(C, row_stats, col_stats, dtype, bias);
}

}  // namespace

TORCH_LIBRARY_IMPL(bitsandbytes, CompositeImplicitAutograd, m) { m.impl("int8_scaled_mm", &int8_scaled_mm); }
