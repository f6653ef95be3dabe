// The per-block scales (absmax) of a 4-bit tensor in the two layouts checkpoints hold them:
// plain float32, one per block, or nested ("compress_statistics"): one 8-bit code per block
// of (absmax - offset), itself block-wise quantized with a 256-value code table and one
// float32 absmax per `1 << log2_nested_blocksize` blocks. Kernels that read a 4-bit weight
// take this view, so a nested state is used as it is stored (no float32 absmax is written
// out per call). Torch-free; compiled for host and device.
#pragma once
#include <cstdint>

#include "bnb/dtype.h"

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
  BNB_HD bool is_nested() const { return nested != nullptr; }
};

// The absmax of block b, as dequantize_blockwise(nested) + offset computes it in float32: one
// product, one sum, each rounded (never contracted to an fma, so the value is that of the
// unfused dequantization bit for bit).
BNB_HD float nested_scale(const BlockScales& s, int64_t b) {
#if defined(__CUDA_ARCH__)
  const float code = __ldg(s.nested_code + __ldg(s.nested + b));
  return __fadd_rn(__fmul_rn(code, __ldg(s.nested_absmax + (b >> s.log2_nested_blocksize))), __ldg(s.offset));
#else
  const float product = s.nested_code[s.nested[b]] * s.nested_absmax[b >> s.log2_nested_blocksize];
  return product + *s.offset;  // ISO C++ mode (-std=c++17): no contraction to an fma
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
