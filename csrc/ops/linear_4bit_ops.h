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
  const DType dt = kernel_dtype(A.scalar_type(), op, "A");
  BNB_CHECK_VALUE(A.dim() >= 1, op, ": A must have at least one dimension ([..., K]), got a scalar");
  BNB_CHECK_VALUE(shapeB.size() == 2, op, ": shapeB must be the weight's shape [N, K], got ", shapeB);
  const int64_t N = shapeB[0], K = shapeB[1];
  BNB_CHECK_VALUE(N >= 0 && K >= 0, op, ": shapeB must not have negative sizes, got ", shapeB);
  BNB_CHECK_VALUE(A.size(-1) == K, op, ": A's last dimension (", A.size(-1), ") must equal the weight's K (", K,
                  ")");
  check_blocksize(blocksize, kFormat4bit, op);
  check_same_device(B, A, op, "B", "A");
  BNB_CHECK_VALUE(B.is_contiguous(), op, ": B (the packed weight) must be contiguous");
  packed_bytes(B, N * K, op, "B");
  check_code(code, kFormat4bit, A, op, "code", "A");
  if (bias.has_value()) {
    BNB_CHECK_TYPE(bias->scalar_type() == A.scalar_type(), op, ": bias must have A's dtype (", A.scalar_type(),
                   "), got ", bias->scalar_type());
    check_same_device(*bias, A, op, "bias", "A");
    BNB_CHECK_VALUE(bias->dim() == 1 && bias->numel() == N, op, ": bias must have shape [", N, "], got ",
                    bias->sizes());
  }
  const BlockScales scales =
      block_scales(absmax, nested_code, nested_absmax, nested_offset, nested_blocksize, A, N * K, blocksize, op);
  std::vector<int64_t> out_shape(A.sizes().begin(), A.sizes().end());
  out_shape.back() = N;
  int64_t M = 1;  // rows of A (leading dimensions; K may be 0)
  for (size_t d = 0; d + 1 < out_shape.size(); ++d) M *= out_shape[d];
  if (M == 0 || N == 0 || K == 0) {  // a sum over nothing is zero (plus the bias)
    at::Tensor out = at::zeros(out_shape, A.options());
    return bias.has_value() ? out.add_(*bias) : out;
  }
  if (M > Backend::kFused4bitMaxRows) {
    at::Tensor m = absmax;
    if (scales.is_nested())
      m = dequantize_blockwise<Backend>(absmax, *nested_absmax, *nested_code, nested_blocksize, at::kFloat)
              .add_(*nested_offset);
    const at::Tensor W = dequantize_with_code<Backend>(B, m, code, blocksize, {N, K}, A.scalar_type(), op);
    return at::linear(A, W, bias);
  }
  at::Tensor out = at::empty(out_shape, A.options());
  const at::Tensor a = A.contiguous(), c = code.contiguous();
  Backend::launch(A, Backend::gemv_4bit, dt, a.const_data_ptr(), static_cast<const uint8_t*>(B.const_data_ptr()),
                  c.const_data_ptr<float>(), scales, bias.has_value() ? bias->const_data_ptr() : nullptr,
                  out.mutable_data_ptr(), M, N, K, blocksize);
  return out;
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
