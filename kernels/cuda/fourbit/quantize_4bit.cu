// The dtype dispatch of the 4-bit quantize/dequantize launchers (the kernels are instantiated
// per dtype in quantize_4bit_{f32,f16,bf16}.cu).
#include "quantize_4bit.cuh"

namespace bnb::cuda {

#define BNB_DECLARE_4BIT(T)                                                                                \
  extern template cudaError_t launch_quantize_4bit<T>(const T*, QuantType4bit, uint8_t*, float*, int64_t, \
                                                      int64_t, cudaStream_t);                             \
  extern template cudaError_t launch_dequantize_4bit<T>(const uint8_t*, const float*, const BlockScales&, T*, \
                                                        int64_t, int64_t, cudaStream_t);
BNB_DECLARE_4BIT(float)
BNB_DECLARE_4BIT(__half)
BNB_DECLARE_4BIT(__nv_bfloat16)
#undef BNB_DECLARE_4BIT

cudaError_t quantize_4bit(DType dtype, const void* A, QuantType4bit quant_type, uint8_t* out, float* absmax,
                          int64_t n, int64_t blocksize, cudaStream_t stream) {
  switch (dtype) {
    case DType::Float32:
      return launch_quantize_4bit(static_cast<const float*>(A), quant_type, out, absmax, n, blocksize, stream);
    case DType::Float16:
      return launch_quantize_4bit(static_cast<const __half*>(A), quant_type, out, absmax, n, blocksize, stream);
    case DType::BFloat16:
      return launch_quantize_4bit(static_cast<const __nv_bfloat16*>(A), quant_type, out, absmax, n, blocksize,
                                  stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t dequantize_4bit(DType dtype, const uint8_t* A, const float* code, const BlockScales& scales, void* out,
                            int64_t n, int64_t blocksize, cudaStream_t stream) {
  switch (dtype) {
    case DType::Float32:
      return launch_dequantize_4bit(A, code, scales, static_cast<float*>(out), n, blocksize, stream);
    case DType::Float16:
      return launch_dequantize_4bit(A, code, scales, static_cast<__half*>(out), n, blocksize, stream);
    case DType::BFloat16:
      return launch_dequantize_4bit(A, code, scales, static_cast<__nv_bfloat16*>(out), n, blocksize, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace bnb::cuda
