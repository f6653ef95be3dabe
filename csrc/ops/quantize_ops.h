// The 8-bit quantization ops, written once over a backend (CPU or CUDA) that supplies the
// launchers: checks, contiguity and output allocation here, arithmetic in kernels/. Maps and
// block sizes are checked against kFormat8bit (bnb/dtype.h); the CPU takes any block size.
#pragma once
#include <ATen/ops/empty.h>
#include <tuple>

#include "checks.h"

namespace bnb::ops {

template <class Backend>
std::tuple<at::Tensor, at::Tensor> quantize_blockwise(const at::Tensor& A, const at::Tensor& code,
                                                      int64_t blocksize) {
  constexpr const char* op = "quantize_blockwise";
  const DType dt = kernel_dtype(A.scalar_type(), op, "A");
  check_code(code, kFormat8bit, A, op);
  check_blocksize_on(A, blocksize, kFormat8bit, op);
  const at::Tensor a = A.contiguous(), c = code.contiguous();
  at::Tensor out = at::empty(A.sizes(), A.options().dtype(at::kByte));
  at::Tensor absmax = at::empty({num_blocks(A.numel(), blocksize)}, A.options().dtype(at::kFloat));
  Backend::launch(A, Backend::quantize_blockwise, dt, a.const_data_ptr(), c.const_data_ptr<float>(),
                  out.mutable_data_ptr<uint8_t>(), absmax.mutable_data_ptr<float>(), A.numel(), blocksize);
  return {out, absmax};
}

template <class Backend>
at::Tensor dequantize_blockwise(const at::Tensor& A, const at::Tensor& absmax, const at::Tensor& code,
                                int64_t blocksize, c10::ScalarType dtype) {
  constexpr const char* op = "dequantize_blockwise";
  check_dtype(A, at::kByte, op, "A");
  const DType dt = kernel_dtype(dtype, op, "dtype");
  check_code(code, kFormat8bit, A, op);
  check_blocksize_on(A, blocksize, kFormat8bit, op);
  check_absmax(absmax, A, num_blocks(A.numel(), blocksize), op);
  const at::Tensor a = A.contiguous(), c = code.contiguous(), m = absmax.contiguous();
  at::Tensor out = at::empty(A.sizes(), A.options().dtype(dtype));
  Backend::launch(A, Backend::dequantize_blockwise, dt, a.const_data_ptr<uint8_t>(), c.const_data_ptr<float>(),
                  m.const_data_ptr<float>(), out.mutable_data_ptr(), A.numel(), blocksize);
  return out;
}

template <class Backend>
void dequantize_blockwise_out(const at::Tensor& A, const at::Tensor& absmax, const at::Tensor& code, int64_t blocksize,
                              c10::ScalarType dtype, at::Tensor& out) {
  copy_to_out(dequantize_blockwise<Backend>(A, absmax, code, blocksize, dtype), out, "dequantize_blockwise.out");
}

template <class Backend>
std::tuple<at::Tensor, at::Tensor> quantize(const at::Tensor& A, const at::Tensor& code) {
  constexpr const char* op = "quantize";
  const DType dt = kernel_dtype(A.scalar_type(), op, "A");
  check_code(code, kFormat8bit, A, op);
  const at::Tensor a = A.contiguous(), c = code.contiguous();
  at::Tensor out = at::empty(A.sizes(), A.options().dtype(at::kByte));
  at::Tensor absmax = at::empty({}, A.options().dtype(at::kFloat));
  Backend::launch(A, Backend::absmax, dt, a.const_data_ptr(), A.numel(), absmax.mutable_data_ptr<float>());
  Backend::launch(A, Backend::quantize_scaled, dt, a.const_data_ptr(), c.const_data_ptr<float>(),
                  absmax.const_data_ptr<float>(), out.mutable_data_ptr<uint8_t>(), A.numel());
  return {out, absmax};
}

template <class Backend>
at::Tensor dequantize(const at::Tensor& A, const at::Tensor& absmax, const at::Tensor& code, c10::ScalarType dtype) {
  constexpr const char* op = "dequantize";
  check_dtype(A, at::kByte, op, "A");
  const DType dt = kernel_dtype(dtype, op, "dtype");
  check_code(code, kFormat8bit, A, op);
  check_absmax(absmax, A, 1, op);
  const at::Tensor a = A.contiguous(), c = code.contiguous();
  at::Tensor out = at::empty(A.sizes(), A.options().dtype(dtype));
  Backend::launch(A, Backend::dequantize_scaled, dt, a.const_data_ptr<uint8_t>(), c.const_data_ptr<float>(),
                  absmax.const_data_ptr<float>(), out.mutable_data_ptr(), A.numel());
  return out;
}

template <class Backend>
at::Tensor quantize_no_absmax(const at::Tensor& A, const at::Tensor& code) {
  constexpr const char* op = "quantize_no_absmax";
  const DType dt = kernel_dtype(A.scalar_type(), op, "A");
  check_code(code, kFormat8bit, A, op);
  const at::Tensor a = A.contiguous(), c = code.contiguous();
  at::Tensor out = at::empty(A.sizes(), A.options().dtype(at::kByte));
  Backend::launch(A, Backend::quantize_scaled, dt, a.const_data_ptr(), c.const_data_ptr<float>(), nullptr,
                  out.mutable_data_ptr<uint8_t>(), A.numel());
  return out;
}

template <class Backend>
at::Tensor dequantize_no_absmax(const at::Tensor& A, const at::Tensor& code, c10::ScalarType dtype) {
  constexpr const char* op = "dequantize_no_absmax";
  check_dtype(A, at::kByte, op, "A");
  const DType dt = kernel_dtype(dtype, op, "dtype");
  check_code(code, kFormat8bit, A, op);
  const at::Tensor a = A.contiguous(), c = code.contiguous();
  at::Tensor out = at::empty(A.sizes(), A.options().dtype(dtype));
  Backend::launch(A, Backend::dequantize_scaled, dt, a.const_data_ptr<uint8_t>(), c.const_data_ptr<float>(), nullptr,
                  out.mutable_data_ptr(), A.numel());
  return out;
}

// Registers every quantization op of this file for one dispatch key.
#define BNB_REGISTER_QUANTIZE_OPS(m, Backend)                                         \
  m.impl("quantize_blockwise", &bnb::ops::quantize_blockwise<Backend>);             \
  m.impl("dequantize_blockwise", &bnb::ops::dequantize_blockwise<Backend>);         \
  m.impl("dequantize_blockwise.out", &bnb::ops::dequantize_blockwise_out<Backend>); \
  m.impl("quantize", &bnb::ops::quantize<Backend>);                         \
  m.impl("dequantize", &bnb::ops::dequantize<Backend>);                     \
  m.impl("quantize_no_absmax", &bnb::ops::quantize_no_absmax<Backend>);     \
  m.impl("dequantize_no_absmax", &bnb::ops::dequantize_no_absmax<Backend>);

}  // namespace bnb::ops
