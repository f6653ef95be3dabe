// How block-wise codes (8-bit maps, NF4, FP4) keep non-finite values, on the CPU and the GPU.
//
// A code cannot hold NaN or Inf, and one such value must not damage the finite values of its
// block. So:
// - a block's absmax is the largest magnitude of its finite values;
// - a block holding a non-finite value is marked by the sign bit of its absmax (-absmax;
//   -0.0 when its finite values are all zero). Finite data never sets it, so blocks without
//   non-finite values keep exactly the codes and absmax they always had;
// - in a marked block one code is reserved (kReservedCode8bit / kReservedCode4bit): the
//   non-finite values take it, a finite value that would take it takes a neighbouring code,
//   and dequantize gives NaN for it. Every other value of the block is unchanged.
// The reserved codes are ones finite data rarely needs: 8-bit code 0 (the most negative map
// entry, -0.993 of absmax in the dynamic map, whose neighbour is -0.979), NF4 code 8
// (0.0796, between 0.0 and 0.161), FP4 code 8 (-0.0, the same value as code 0).
#pragma once
#include <cfloat>
#include <cmath>
#include <cstdint>

#include "bnb/dtype.h"
#include "bnb/float_bits.h"

namespace bnb {

constexpr uint8_t kReservedCode8bit = 0;
constexpr uint8_t kReservedCode4bit = 8;

// False for NaN and +-Inf (the comparison with NaN is false).
BNB_HD bool is_finite_value(float x) { return fabsf(x) <= FLT_MAX; }

// |x| for a finite x, 0 otherwise: what a block's absmax is the maximum of.
BNB_HD float finite_abs(float x) { return is_finite_value(x) ? fabsf(x) : 0.f; }

// x if finite, else 0: how 8-bit optimizer state stores a non-finite new value (the parameter
// took the non-finite update already, as torch's would; the state's block keeps its scale).
BNB_HD float finite_or_zero(float x) { return is_finite_value(x) ? x : 0.f; }

// 1.0 for a non-finite x, 0.0 otherwise; a block is marked when the maximum of these is 1.
BNB_HD float nonfinite_flag(float x) { return is_finite_value(x) ? 0.f : 1.f; }

// The absmax a block stores: its finite absmax, negated when the block is marked.
BNB_HD float stored_absmax(float amax, float flag) { return flag > 0.f ? -amax : amax; }

BNB_HD bool is_marked(float stored) { return (float_bits(stored) >> 31) != 0; }

// The scale that takes a block's values into [-1, 1]: value = (x * pre) * mul. A subnormal
// absmax has no finite reciprocal, so it (and the values) are first multiplied by 2^64; for
// any normal absmax pre is 1 and the product is x * (1 / absmax) as ever. `zero` is what an
// all-zero block multiplies by (8-bit: 0, to code 0.0; 4-bit: the reciprocal, Inf, as
// the 4-bit format always had).
struct BlockScale {
  float pre, mul;
  BNB_HD float apply(float x) const { return (x * pre) * mul; }
};
BNB_HD float block_prescale(float amax) { return (amax > 0.f && amax < FLT_MIN) ? 18446744073709551616.f : 1.f; }
BNB_HD BlockScale block_scale(float amax, bool zero_to_zero) {
  const float pre = block_prescale(amax);
  const float mul = (zero_to_zero && !(amax > 0.f)) ? 0.f : 1.0f / (amax * pre);
  return {pre, mul};
}

// The 8-bit code of x (q: its nearest map entry) in a block that is `marked`.
BNB_HD uint8_t marked_code_8bit(uint8_t q, float x, bool marked) {
  if (!marked) return q;
  if (!is_finite_value(x)) return kReservedCode8bit;
  return q == kReservedCode8bit ? uint8_t(kReservedCode8bit + 1) : q;
}

// The value of 8-bit or 4-bit code q of a block whose stored absmax is `stored`.
BNB_HD float dequantized_value(float entry, uint8_t q, uint8_t reserved, float stored) {
  return (is_marked(stored) && q == reserved) ? NAN : entry * fabsf(stored);
}

// Whether one of the eight 4-bit codes packed in `word` is the reserved code: x has a zero
// nibble exactly where word has the reserved one, and (x - 0x1...1) & ~x sets the top bit of
// some nibble if and only if x has a zero nibble.
BNB_HD bool holds_reserved_code_4bit(uint32_t word) {
  const uint32_t x = word ^ (0x11111111u * kReservedCode4bit);
  return ((x - 0x11111111u) & ~x & 0x88888888u) != 0;
}

// The scale of some weights of one row of a block, for a product that cannot single out the
// reserved code cheaply (the tensor-core 4-bit GEMM): in a marked block NaN where those
// weights hold the reserved code (`holds_reserved`), so that their row's output is NaN, as
// F.linear's with a NaN weight; else the block's |absmax|, so that the other rows of a block
// that spans several rows keep their values.
BNB_HD float block_scale_or_nan(float stored, bool holds_reserved) {
  return is_marked(stored) ? (holds_reserved ? NAN : fabsf(stored)) : stored;
}

// Tensor-wise codes (one absmax for the whole tensor, `quantize` / `dequantize`): the tensor is
// the block, and has no room for a mark, so a NaN or Inf anywhere makes the absmax non-finite
// and the whole dequantized tensor NaN.
BNB_HD float max_keeping_nan(float m, float a) { return (a > m || a != a) ? a : m; }
BNB_HD float tensor_scale(float absmax) { return absmax <= FLT_MAX ? absmax : NAN; }

// LLM.int8() rows (nothing above is used there: a row's int8 codes share one float32 absmax).
// A row's absmax is NaN when it holds a NaN or two or more Infs, else Inf when it holds one
// Inf, so that the row dequantizes to what torch gives: NaN for a NaN row; for an Inf row the
// Inf keeps its sign (+-127 * Inf) and the finite values become 0 * Inf = NaN. In a product one
// Inf then gives torch's +-Inf; two could give torch's Inf - Inf = NaN, which int8 sums cannot
// tell from a finite sum, so such a row is NaN. The int8 code of a value whose
// product with its row's scale is NaN (the non-finite rows' scale is 0) is then:
BNB_HD int8_t int8_code_of_nan_product(float x) { return x > FLT_MAX ? 127 : (x < -FLT_MAX ? -127 : 0); }

// The same rule for a column's absmax (int8_double_quant), which is reduced from partial maxima
// of row ranges in any order: two magnitudes (or partial absmaxes) merge to NaN when either is
// NaN or both are Inf (two Infs), else to the larger. Order-free, so atomics may merge it.
BNB_HD float int8_absmax_merge(float m, float a) {
  if (m != m || a != a || (m > FLT_MAX && a > FLT_MAX)) return NAN;
  return a > m ? a : m;
}

}  // namespace bnb
