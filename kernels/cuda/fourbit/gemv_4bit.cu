// The dtype dispatch of the fused 4-bit product (kernels instantiated per dtype in
// gemv_4bit_{f32,f16,bf16}.cu).
#include "gemv_4bit.cuh"

namespace bnb::cuda {

#define BNB_DECLARE_GEMV_4BIT(T)                                                                          \
  extern template cudaError_t launch_gemv_4bit<T>(const T*, const uint8_t*, const float*, const BlockScales&, \
                                                  const T*, T*, int64_t, int64_t, int64_t, int64_t, cudaStream_t);
BNB_DECLARE_GEMV_4BIT(float)
BNB_DECLARE_GEMV_4BIT(__half)
BNB_DECLARE_GEMV_4BIT(__nv_bfloat16)
#undef BNB_DECLARE_GEMV_4BIT

cudaError_t gemv_4bit(DType dtype, const void* A, const uint8_t* B, const float* code, const BlockScales& scales,
                      const void* bias, void* out, int64_t M, int64_t N, int64_t K, int64_t blocksize,
                      cudaStream_t stream) {
  switch (dtype) {
    case DType::Float32:
      return launch_gemv_4bit(static_cast<const float*>(A), B, code, scales, static_cast<const float*>(bias),
                              static_cast<float*>(out), M, N, K, blocksize, stream);
    case DType::Float16:
      return launch_gemv_4bit(static_cast<const __half*>(A), B, code, scales, static_cast<const __half*>(bias),
                              static_cast<__half*>(out), M, N, K, blocksize, stream);
    case DType::BFloat16:
      return launch_gemv_4bit(static_cast<const __nv_bfloat16*>(A), B, code, scales,
                              static_cast<const __nv_bfloat16*>(bias), static_cast<__nv_bfloat16*>(out), M, N, K,
                              blocksize, stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace bnb::cuda
