// CPU launchers for 4-bit quantization (NF4, FP4) and the fused 4-bit matrix-vector product
// (OpenMP, 64-bit indexing). Inputs and outputs are contiguous.
//
// Packed layout: value i's code sits in byte i / 2, the high nibble for even i; an odd n
// leaves the last low nibble to a padding value of 0.0. One float32 absmax per run of
// `blocksize` values (a power of two, 32..4096; see kFormat4bit).
#pragma once
#include <cstdint>

#include "bnb/block_scales.h"
#include "bnb/codes_4bit.h"
#include "bnb/dtype.h"

namespace bnb::cpu {

// A (n values of dtype) -> out (packed_bytes_4bit(n) bytes), absmax (num_blocks(n, blocksize)).
void quantize_4bit(DType dtype, const void* A, QuantType4bit quant_type, uint8_t* out, float* absmax, int64_t n,
                   int64_t blocksize);
// out[i] = code[nibble i] * absmax of block i / blocksize (plain or nested scales), rounded
// once to dtype. `code` holds 16 values indexed by the nibble (kNF4Code, kFP4Code, or a
// checkpoint's quant_map).
void dequantize_4bit(DType dtype, const uint8_t* A, const float* code, const BlockScales& scales, void* out, int64_t n,
                     int64_t blocksize);
// out[M, N] = A[M, K] @ W[N, K]^T (+ bias[N]), W the packed codes of N * K values (row-major,
// block-wise scales over the flattened weight, plain or nested). A, bias and out share dtype;
// bias may be null. Each weight is dequantized as dequantize_4bit would (rounded to dtype),
// products summed in float32, the sum plus bias rounded once to dtype.
void gemv_4bit(DType dtype, const void* A, const uint8_t* B, const float* code, const BlockScales& scales,
               const void* bias, void* out, int64_t M, int64_t N, int64_t K, int64_t blocksize);

}  // namespace bnb::cpu
