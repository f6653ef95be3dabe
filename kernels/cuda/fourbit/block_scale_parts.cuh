// A block's scale as the 4-bit kernels read it on the GPU, plain or nested (bnb/block_scales.h),
// with the nested codes' 256 values in shared memory: loaded as parts (the plain absmax; or the
// nested group absmax and code) and made a float only when used, so that a product's next round
// of loads never waits on them.
#pragma once
#include <cstdint>

#include "bnb/block_scales.h"

namespace bnb::cuda {

struct ScaleParts {
  float a;
  uint32_t q;
};
// Block b's parts (Index: the products' 32-bit block numbers, or dequantize's 64-bit ones).
template <typename Index>
__device__ __forceinline__ ScaleParts load_scale_parts(const BlockScales& s, Index b) {
  if (s.nested) return {__ldg(s.nested_absmax + (b >> s.log2_nested_blocksize)), uint32_t(__ldg(s.nested + b))};
  return {__ldg(s.absmax + b), 0u};
}
__device__ __forceinline__ float scale_of(const BlockScales& s, ScaleParts p, const float* s_ncode, float offset) {
  return s.nested ? nested_scale_of(s_ncode[p.q], p.a, uint8_t(p.q), offset) : p.a;
}

}  // namespace bnb::cuda
