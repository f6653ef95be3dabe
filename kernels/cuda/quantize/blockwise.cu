// The dtype dispatch of the block-wise launchers (the kernels are instantiated per dtype
// in blockwise_{f32,f16,bf16}.cu).
#include "blockwise.cuh"

namespace bnb::cuda {

extern template cudaError_t launch_quantize_blockwise<float>(const float*, const float*, uint8_t*, float*,
                                                             int64_t, int64_t, cudaStream_t);
extern template cudaError_t launch_quantize_blockwise<__half>(const __half*, const float*, uint8_t*, float*,
                                                              int64_t, int64_t, cudaStream_t);
extern template cudaError_t launch_quantize_blockwise<__nv_bfloat16>(const __nv_bfloat16*, const float*,
                                                                     uint8_t*, float*, int64_t, int64_t,
                                                                     cudaStream_t);
extern template cudaError_t launch_dequantize_blockwise<float>(const uint8_t*, const float*, const float*,
                                                               float*, int64_t, int64_t, cudaStream_t);
extern template cudaError_t launch_dequantize_blockwise<__half>(const uint8_t*, const float*, const float*,
                                                                __half*, int64_t, int64_t, cudaStream_t);
extern template cudaError_t launch_dequantize_blockwise<__nv_bfloat16>(const uint8_t*, const float*,
                                                                       const float*, __nv_bfloat16*, int64_t,
                                                                       int64_t, cudaStream_t);

cudaError_t quantize_blockwise(DType dtype, const void* A, const float* code, uint8_t* out, float* absmax,
                               int64_t n, int64_t blocksize, cudaStream_t stream) {
  switch (dtype) {
    case DType::Float32:
      return launch_quantize_blockwise(static_cast<const float*>(A), code, out, absmax, n, blocksize, stream);
    case DType::Float16:
      return launch_quantize_blockwise(static_cast<const __half*>(A), code, out, absmax, n, blocksize, stream);
    case DType::BFloat16:
      return launch_quantize_blockwise(static_cast<const __nv_bfloat16*>(A), code, out, absmax, n, blocksize,
                                       stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t dequantize_blockwise(DType dtype, const uint8_t* A, const float* code, const float* absmax, void* out,
                                 int64_t n, int64_t blocksize, cudaStream_t stream) {
  switch (dtype) {
    case DType::Float32:
      return launch_dequantize_blockwise(A, code, absmax, static_cast<float*>(out), n, blocksize, stream);
    case DType::Float16:
      return launch_dequantize_blockwise(A, code, absmax, static_cast<__half*>(out), n, blocksize, stream);
    case DType::BFloat16:
      return launch_dequantize_blockwise(A, code, absmax, static_cast<__nv_bfloat16*>(out), n, blocksize,
                                         stream);
  }
  return cudaErrorInvalidValue;
}

}  // namespace bnb::cuda
