// CUDA launchers for 4-bit quantization (NF4, FP4) and the fused 4-bit matrix-vector product;
// the twins of bnb/quantize_4bit_cpu.h (same names, same arguments, a trailing stream) and
// equal to them: the same codes and absmax, the same dequantized values bit for bit, the
// product up to the order of its float32 sums. All pointers are device pointers; work is
// queued on `stream` and nothing synchronises. Each returns the launch status
// (cudaErrorInvalidValue for a block size outside kFormat4bit).
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

#include "bnb/block_scales.h"
#include "bnb/codes_4bit.h"
#include "bnb/dtype.h"

namespace bnb::cuda {

cudaError_t quantize_4bit(DType dtype, const void* A, QuantType4bit quant_type, uint8_t* out, float* absmax,
                          int64_t n, int64_t blocksize, cudaStream_t stream);
cudaError_t dequantize_4bit(DType dtype, const uint8_t* A, const float* code, const BlockScales& scales, void* out,
                            int64_t n, int64_t blocksize, cudaStream_t stream);
// `code` is 16 floats on the device; bias may be null; any M. fp16/bf16 activations with
// K % 128 == 0 and M <= kGemm4bitMaxRows take the tensor-core kernel, whose weights are the
// product of code and scale each rounded to the dtype first (at most about 1.5 units in the
// last place of the dtype from dequantize_4bit's single rounding); the rest take the CUDA-core
// kernel, whose weights are dequantize_4bit's.
constexpr int64_t kGemm4bitMaxRows = 64;
cudaError_t gemv_4bit(DType dtype, const void* A, const uint8_t* B, const float* code, const BlockScales& scales,
                      const void* bias, void* out, int64_t M, int64_t N, int64_t K, int64_t blocksize,
                      cudaStream_t stream);

}  // namespace bnb::cuda
