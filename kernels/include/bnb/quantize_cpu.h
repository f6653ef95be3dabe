// CPU launchers for 8-bit quantization with a 256-entry map (OpenMP, 64-bit indexing).
// Inputs and outputs are contiguous; `code` is sorted ascending.
#pragma once
#include <cstdint>
#include "bnb/dtype.h"

namespace bnb::cpu {

// Block-wise: each run of `blocksize` values is scaled by its own absmax.
void quantize_blockwise(DType dtype, const void* A, const float* code, uint8_t* out, float* absmax,
                        int64_t n, int64_t blocksize);
void dequantize_blockwise(DType dtype, const uint8_t* A, const float* code, const float* absmax,
                          void* out, int64_t n, int64_t blocksize);

// Tensor-wise: writes max |A| over the whole tensor into *absmax.
void absmax(DType dtype, const void* A, int64_t n, float* absmax);
// Nearest code of A[i] * (1 / scale); scale == nullptr means 1 (no absmax).
void quantize_scaled(DType dtype, const void* A, const float* code, const float* scale, uint8_t* out,
                     int64_t n);
// out[i] = code[A[i]] * scale; scale == nullptr means 1.
void dequantize_scaled(DType dtype, const uint8_t* A, const float* code, const float* scale, void* out,
                       int64_t n);

}  // namespace bnb::cpu
