// Comparisons of floats as the integers 0 and 1, read from the sign bit of a difference or a
// sum instead of a compare and a select.
//
// Why: the code searches of the quantize and optimizer kernels compare every value with a
// threshold and add the outcome to a code. On the GPU a compare and a select both run on the
// integer/compare pipe, the one these kernels are bound by (an H100 runs half as many of its
// instructions a cycle as floating-point ones); a subtraction runs on the floating-point pipe
// and leaves one shift on the other.
//
// Exactness: for finite a and b, a - b rounded to nearest is negative exactly when a < b. A
// nonzero difference keeps its sign through rounding (a difference of floats too small for a
// normal float is exact, and flushing it to zero keeps the sign), and a == b gives +0.0. The
// one exception is a = -0.0, b = +0.0 (the difference is -0.0): callers compare with
// thresholds that are never -0.0, or make zeros positive first (positive_zero).
#pragma once
#include <cstdint>

#include "bnb/dtype.h"
#include "bnb/float_bits.h"

namespace bnb {

// a - b rounded to nearest, never fused with a product into one rounding.
BNB_HD float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}

// 1 if a < b, else 0 (see above for the one pair of zeros where this differs from a < b).
BNB_HD uint32_t below_bit(float a, float b) { return float_bits(sub_rn(a, b)) >> 31; }

// x with -0.0 made +0.0 (x + 0.0 rounds -0.0 to +0.0 and leaves every other x as it is), so
// that its sign bit says x < 0 for every non-NaN x.
BNB_HD float positive_zero(float x) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(x, 0.f);
#else
  return x + 0.f;  // (not folded to x: signed zeros forbid it without -ffast-math)
#endif
}

// Byte i (0..3) of w: one byte permute on the GPU (its other three bytes, copies of w's
// first, are what the narrowing drops).
BNB_HD uint8_t byte_of(uint32_t w, uint32_t i) {
#if defined(__CUDA_ARCH__)
  return uint8_t(__byte_perm(w, 0u, i));
#else
  return uint8_t(w >> (8 * i));
#endif
}

}  // namespace bnb
