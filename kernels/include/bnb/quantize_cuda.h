// CUDA launchers for 8-bit quantization with a 256-entry map. All pointers are device
// pointers; work is queued on `stream` and nothing synchronises. Each returns the launch
// status so the caller can turn a failure into an error. Names and arguments are those of
// bnb/quantize_cpu.h, in the same order, with the stream last.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>
#include "bnb/dtype.h"

namespace bnb::cuda {

cudaError_t quantize_blockwise(DType dtype, const void* A, const float* code, uint8_t* out,
                               float* absmax, int64_t n, int64_t blocksize, cudaStream_t stream);
cudaError_t dequantize_blockwise(DType dtype, const uint8_t* A, const float* code,
                                 const float* absmax, void* out, int64_t n, int64_t blocksize,
                                 cudaStream_t stream);

// Writes max |A| into *absmax (a single float on the device).
cudaError_t absmax(DType dtype, const void* A, int64_t n, float* absmax, cudaStream_t stream);
// scale == nullptr means 1.
cudaError_t quantize_scaled(DType dtype, const void* A, const float* code, const float* scale,
                            uint8_t* out, int64_t n, cudaStream_t stream);
cudaError_t dequantize_scaled(DType dtype, const uint8_t* A, const float* code, const float* scale,
                              void* out, int64_t n, cudaStream_t stream);

}  // namespace bnb::cuda
