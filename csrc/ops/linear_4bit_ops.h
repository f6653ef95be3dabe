// linear_4bit: y = A @ dequant(W)^T (+ bias) for a 4-bit weight W [N, K] in the checkpoint's
// layout, plain or nested scales. The one place that picks the path by shape: up to
// Backend::kFused4bitMaxRows rows of A take the fused kernel (the weight is read once and
// never dequantized to memory); more rows are a matmul's work, so the weight is dequantized
// once to A's dtype and torch's linear does it.
#pragma once
#include <ATen/ops/linear.h>
#include <optional>

#include "quantize_4bit_ops.h"
#include "quantize_ops.h"

namespace bnb::ops {

namespace fourbit_detail {

// The scales of W as the kernels read them, after checking that they describe N * K values.
inline BlockScales block_scales(const at::Tensor& absmax, const std::optional<at::Tensor>& nested_code,
                                const std::optional<at::Tensor>& nested_absmax,
                                const std::optional<at::Tensor>& nested_offset, int64_t nested_blocksize,
                                const at::Tensor& A, int64_t n, int64_t blocksize, const char* op) {
  const int64_t blocks = num_blocks(n, blocksize);
  check_same_device(absmax, A, op, "absmax", "A");
  BNB_CHECK_VALUE(absmax.is_contiguous(), op, ": absmax must be contiguous");
  BNB_CHECK_VALUE(absmax.numel() == blocks, op, ": absmax must hold ", blocks, " values (one per block of ",
                  blocksize, " of the ", n, " weights), got ", absmax.numel());
  if (!nested_code.has_value()) {
    BNB_CHECK_TYPE(absmax.scalar_type() == at::kFloat, op,
                   ": absmax must be float32 (or uint8 with nested_code and nested_absmax), got ",
                   absmax.scalar_type());
    return BlockScales::plain(absmax.const_data_ptr<float>());
  }
  BNB_CHECK_VALUE(nested_absmax.has_value() && nested_offset.has_value(), op,
                  ": nested_code needs nested_absmax and nested_offset");
  check_dtype(*nested_offset, at::kFloat, op, "nested_offset");
  check_same_device(*nested_offset, A, op, "nested_offset", "A");
  BNB_CHECK_VALUE(nested_offset->numel() == 1, op, ": nested_offset must hold one value, got ",
                  nested_offset->numel());
  check_dtype(absmax, at::kByte, op, "absmax (nested)");
  check_code(*nested_code, kFormat8bit, A, op, "nested_code");
  BNB_CHECK_VALUE(nested_code->is_contiguous(), op, ": nested_code must be contiguous");
  BNB_CHECK_VALUE(nested_blocksize > 0 && (nested_blocksize & (nested_blocksize - 1)) == 0, op,
                  ": nested_blocksize must be a power of two, got ", nested_blocksize);
  const at::Tensor& m2 = *nested_absmax;
  check_dtype(m2, at::kFloat, op, "nested_absmax");
  check_same_device(m2, A, op, "nested_absmax", "A");
  BNB_CHECK_VALUE(m2.is_contiguous(), op, ": nested_absmax must be contiguous");
  BNB_CHECK_VALUE(m2.numel() == num_blocks(blocks, nested_blocksize), op, ": nested_absmax must hold ",
                  num_blocks(blocks, nested_blocksize), " values (one per ", nested_blocksize, " blocks), got ",
                  m2.numel());
  BlockScales s;
  s.nested = absmax.const_data_ptr<uint8_t>();
  s.nested_code = nested_code->const_data_ptr<float>();
  s.nested_absmax = m2.const_data_ptr<float>();
  s.offset = nested_offset->const_data_ptr<float>();
  int log2 = 0;
  while ((int64_t(1) << log2) < nested_blocksize) ++log2;
  s.log2_nested_blocksize = log2;
  return s;
}

}  // namespace fourbit_detail

template <class Backend>
at::Tensor linear_4bit(const at::Tensor& A, const at::Tensor& B, c10::IntArrayRef shapeB, const at::Tensor& absmax,
                       const at::Tensor& code, int64_t blocksize, const std::optional<at::Tensor>& bias,
                       const std::optional<at::Tensor>& nested_code, const std::optional<at::Tensor>& nested_absmax,
                       const std::optional<at::Tensor>& nested_offset, int64_t nested_blocksize) {
  using namespace fourbit_detail;
  constexpr const char* op = "linear_4bit";
  kernel_dtype(A.scalar_type(), op, "A");
  const ProductShape shape = check_product(A, B, shapeB, code, blocksize, op);
  const int64_t M = shape.M, N = shape.N, K = shape.K;
  if (bias.has_value()) {
    BNB_CHECK_TYPE(bias->scalar_type() == A.scalar_type(), op, ": bias must have A's dtype (", A.scalar_type(),
                   "), got ", bias->scalar_type());
    check_same_device(*bias, A, op, "bias", "A");
    BNB_CHECK_VALUE(bias->dim() == 1 && bias->numel() == N, op, ": bias must have shape [", N, "], got ",
                    bias->sizes());
  }
  const BlockScales scales =
      block_scales(absmax, nested_code, nested_absmax, nested_offset, nested_blocksize, A, N * K, blocksize, op);
  if (M == 0 || N == 0 || K == 0) {  // a sum over nothing is zero (plus the bias)
    at::Tensor out = at::zeros(shape.out, A.options());
    return bias.has_value() ? out.add_(*bias) : out;
  }
  if (M > Backend::kFused4bitMaxRows) {
    // (nested scales read as they are stored, by the dequantize kernel itself)
    const at::Tensor W = dequantize_with_scales<Backend>(B, scales, code, blocksize, {N, K}, A.scalar_type(), op);
    return at::linear(A, W, bias);
  }
  // The kernels read bias[n] for consecutive n: a strided view is copied to consecutive values.
  const at::Tensor b = bias.has_value() ? bias->contiguous() : at::Tensor();
  return fused_product<Backend>(A, B, code, scales, b.defined() ? b.const_data_ptr() : nullptr, shape, blocksize,
                                op);
}

}  // namespace bnb::ops

// Every 4-bit op of a backend (the registration files of cpu/ and cuda/).
#define BNB_REGISTER_4BIT_OPS(m, Backend)                                     \
  m.impl("quantize_4bit", &bnb::ops::quantize_4bit<Backend>);             \
  m.impl("dequantize_4bit", &bnb::ops::dequantize_4bit<Backend>);         \
  m.impl("dequantize_4bit.out", &bnb::ops::dequantize_4bit_out<Backend>); \
  m.impl("gemv_4bit", &bnb::ops::gemv_4bit<Backend>);                     \
  m.impl("gemv_4bit.out", &bnb::ops::gemv_4bit_out<Backend>);             \
  m.impl("linear_4bit", &bnb::ops::linear_4bit<Backend>);
