// Quantile estimation by a two-level histogram over order-preserving float keys: the
// arithmetic that the CPU and CUDA kernels share (host and device), so both devices
// compute the same estimate from the same counts.
//
// The method. Every value x maps to a 32-bit key that orders like x (key(x) < key(y) iff
// x < y). Only the top kKeyBits = 21 bits of the key are used (sign, exponent and 12
// mantissa bits): a value's "final bin" is its 21-bit prefix, a range of 2048 neighbouring
// floats of relative width 2^-12.
//   pass 1  counts the values of each level-1 bin (top 15 key bits, 32768 bins);
//   locate  turns the counts into cumulative counts and finds, for each wanted rank, the
//           level-1 bin holding it and the rank inside that bin; the distinct bins found
//           (at most one per quantile) become "slots";
//   pass 2  for the values that fall in a slot's level-1 bin only, counts the next 6 key
//           bits (64 sub-bins per slot) and sums the values' positions inside their final
//           bin (the low 11 key bits);
//   finish  finds the final bin holding each wanted rank and returns the mean of its values
//           (from the position sum).
// The estimate therefore lies in the same final bin as the exact order statistic, so the
// values strictly between the two are at most the values of that one bin (the rank-error
// bound in docs/quantiles.md). A final bin whose values are all equal (ties, and every bin
// of float16 or bfloat16 input, which holds one representable value) gives that value
// exactly.
#pragma once
#include <cmath>
#include <cstdint>

#include "bnb/dtype.h"
#include "bnb/float_bits.h"

namespace bnb::quantiles {

constexpr int kMaxQuantiles = 256;
constexpr int kMinValues = 256;
constexpr int kLevel1Bits = 15;
constexpr int kLevel2Bits = 6;
constexpr int kKeyBits = kLevel1Bits + kLevel2Bits;  // 21
constexpr int kLevel1Bins = 1 << kLevel1Bits;        // 32768
constexpr int kLevel2Bins = 1 << kLevel2Bits;        // 64
constexpr int kLevel1Shift = 32 - kLevel1Bits;       // key >> 17 = level-1 bin
constexpr int kFinalShift = 32 - kKeyBits;           // key >> 11 = final bin
constexpr uint32_t kFinalBinFloats = 1u << kFinalShift;  // 2048 floats per final bin
constexpr uint32_t kPositionMask = kFinalBinFloats - 1u;  // a key's position in its final bin

// Negative floats order in reverse of their bits, positive ones like their bits with the
// sign bit set. NaN (either sign) sorts above +inf, as torch.sort puts it.
BNB_HD uint32_t order_key(float x) {
  const uint32_t u = float_bits(x);
  if (x != x) return 0xffffffffu;
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}

BNB_HD float key_value(uint32_t key) {
  return bits_float((key & 0x80000000u) ? (key & 0x7fffffffu) : ~key);
}

// The rank wanted for quantile j: the 0-based order statistic at or below torch.quantile's
// position p * (n - 1). (torch.quantile interpolates towards the next order statistic; the
// estimate does not need to: no value lies strictly between the two.)
BNB_HD int64_t quantile_target(int64_t n, double offset, int num_quantiles, int j) {
  const double p = num_quantiles > 1 ? offset + j * ((1.0 - 2.0 * offset) / (num_quantiles - 1)) : offset;
  // The nudge makes a position that is an integer up to rounding (p computed another way,
  // as torch.linspace does) land on that integer, not one below it.
  double pos = p * double(n - 1) + 1e-6;
  if (pos < 0) pos = 0;
  int64_t r = int64_t(pos);  // floor, pos >= 0
  return r > n - 1 ? n - 1 : r;
}

// The estimate for a rank inside final bin `final_bin` (a 21-bit key prefix) holding
// `count` values whose positions in the bin sum to `position_sum`: the float at the mean
// position, rounded. Equal values (ties, 16-bit inputs) give back exactly their value.
BNB_HD float final_estimate(uint32_t final_bin, uint64_t count, uint64_t position_sum) {
  const uint32_t first_key = final_bin << kFinalShift;
  const uint64_t mean = count ? (position_sum + count / 2) / count : 0;
  return key_value(first_key + uint32_t(mean > kPositionMask ? kPositionMask : mean));
}

}  // namespace bnb::quantiles
