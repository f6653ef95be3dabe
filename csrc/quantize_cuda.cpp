// CUDA registration of the quantization ops.
#include <torch/library.h>

#include "bnb/quantize_cuda.h"
#include "cuda_context.h"
#include "quantize_ops.h"

namespace {

using bnb::ops::launch_on;

struct CudaBackend {
  static void quantize_blockwise(const at::Tensor& like, bnb::DType dt, const void* A, const float* code,
                                 uint8_t* out, float* absmax, int64_t n, int64_t blocksize) {
    launch_on(like, [&](cudaStream_t s) { return bnb::cuda::quantize_blockwise(dt, A, code, out, absmax, n, blocksize, s); });
  }
  static void dequantize_blockwise(const at::Tensor& like, bnb::DType dt, const uint8_t* A, const float* code,
                                   const float* absmax, void* out, int64_t n, int64_t blocksize) {
    launch_on(like, [&](cudaStream_t s) { return bnb::cuda::dequantize_blockwise(dt, A, code, absmax, out, n, blocksize, s); });
  }
  static void absmax(const at::Tensor& like, bnb::DType dt, const void* A, int64_t n, float* out) {
    launch_on(like, [&](cudaStream_t s) { return bnb::cuda::absmax(dt, A, n, out, s); });
  }
  static void quantize_scaled(const at::Tensor& like, bnb::DType dt, const void* A, const float* code,
                              const float* scale, uint8_t* out, int64_t n) {
    launch_on(like, [&](cudaStream_t s) { return bnb::cuda::quantize_scaled(dt, A, code, scale, out, n, s); });
  }
  static void dequantize_scaled(const at::Tensor& like, bnb::DType dt, const uint8_t* A, const float* code,
                                const float* scale, void* out, int64_t n) {
    launch_on(like, [&](cudaStream_t s) { return bnb::cuda::dequantize_scaled(dt, A, code, scale, out, n, s); });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(bitsandbytes, CUDA, m) { BNB_REGISTER_QUANTIZE_OPS(m, CudaBackend) }
