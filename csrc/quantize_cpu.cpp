// CPU registration of the quantization ops.
#include <torch/library.h>

#include "bnb/quantize_cpu.h"
#include "quantize_ops.h"

namespace {

struct CpuBackend {
  static void quantize_blockwise(const at::Tensor&, bnb::DType dt, const void* A, const float* code, uint8_t* out,
                                 float* absmax, int64_t n, int64_t blocksize) {
    bnb::cpu::quantize_blockwise(dt, A, code, out, absmax, n, blocksize);
  }
  static void dequantize_blockwise(const at::Tensor&, bnb::DType dt, const uint8_t* A, const float* code,
                                   const float* absmax, void* out, int64_t n, int64_t blocksize) {
    bnb::cpu::dequantize_blockwise(dt, A, code, absmax, out, n, blocksize);
  }
  static void absmax(const at::Tensor&, bnb::DType dt, const void* A, int64_t n, float* out) {
    *out = bnb::cpu::absmax(dt, A, n);
  }
  static void quantize_scaled(const at::Tensor&, bnb::DType dt, const void* A, const float* code, const float* scale,
                              uint8_t* out, int64_t n) {
    bnb::cpu::quantize_scaled(dt, A, code, scale, out, n);
  }
  static void dequantize_scaled(const at::Tensor&, bnb::DType dt, const uint8_t* A, const float* code,
                                const float* scale, void* out, int64_t n) {
    bnb::cpu::dequantize_scaled(dt, A, code, scale, out, n);
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(bitsandbytes, CPU, m) { BNB_REGISTER_QUANTIZE_OPS(m, CpuBackend) }
