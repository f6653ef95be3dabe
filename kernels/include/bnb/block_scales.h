// The per-block scales (absmax) of a 4-bit tensor in the two layouts checkpoints hold them:
// plain float32, one per block, or nested ("compress_statistics"): one 8-bit code per block
// of (absmax - offset), itself block-wise quantized with a 256-value code table and one
// float32 absmax per `1 << log2_nested_blocksize` blocks. Kernels that read a 4-bit weight
// take this view, so a nested state is used as it is stored (no float32 absmax is written
// out per call). Torch-free; compiled for host and device.
#pragma once
#include <cstdint>

#include "bnb/dtype.h"
#include "bnb/nonfinite.h"

namespace bnb {

struct BlockScales {
  const float* absmax = nullptr;         // plain: one float per block (null when nested)
  const uint8_t* nested = nullptr;       // nested: one code per block
  const float* nested_code = nullptr;    // the 256 values of those codes
  const float* nested_absmax = nullptr;  // one per 1 << log2_nested_blocksize blocks
  const float* offset = nullptr;         // one float, added back after the nested dequantization
  int log2_nested_blocksize = 8;

  static BlockScales plain(const float* absmax) {
    BlockScales s;
    s.absmax = absmax;
    return s;
  }
};

// The absmax of a block from its nested parts: the value of its code q, the absmax of its group
// of blocks and the offset, as dequantize_blockwise(nested) + offset computes it in float32: one
// product, one sum, each rounded (never contracted to an fma, so the value is that of the
// unfused dequantization bit for bit). As functional.blockwise.block_absmax reads it: a nested
// code marked non-finite (bnb/nonfinite.h: a block that held NaN or Inf) gives NaN, a value
// that rounds below zero (a block of values near zero) gives 0, and a NaN from the parts
// themselves (a damaged checkpoint's offset or group absmax) stays NaN, as it does there.
BNB_HD float nested_scale_of(float code_value, float amax, uint8_t q, float offset) {
#if defined(__CUDA_ARCH__)
  const float v = __fadd_rn(__fmul_rn(code_value, fabsf(amax)), offset);
#else
  const float product = code_value * fabsf(amax);
  const float v = product + offset;  // ISO C++ mode (-std=c++17): no contraction to an fma
#endif
  if (is_marked(amax) && q == kReservedCode8bit) return NAN;
  return v <= 0.f ? 0.f : v;
}

// The absmax of block b of nested scales.
BNB_HD float nested_scale(const BlockScales& s, int64_t b) {
#if defined(__CUDA_ARCH__)
  const uint8_t q = __ldg(s.nested + b);
  return nested_scale_of(__ldg(s.nested_code + q), __ldg(s.nested_absmax + (b >> s.log2_nested_blocksize)), q,
                         __ldg(s.offset));
#else
  const uint8_t q = s.nested[b];
  return nested_scale_of(s.nested_code[q], s.nested_absmax[b >> s.log2_nested_blocksize], q, *s.offset);
#endif
}

BNB_HD float block_scale(const BlockScales& s, int64_t b) {
#if defined(__CUDA_ARCH__)
  return s.nested ? nested_scale(s, b) : __ldg(s.absmax + b);
#else
  return s.nested ? nested_scale(s, b) : s.absmax[b];
#endif
}

}  // namespace bnb
