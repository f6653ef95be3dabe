// Quantile estimation by a two-level histogram over order-preserving float keys: the
// arithmetic that the CPU and CUDA kernels share (host and device), so both devices
// compute the same estimate from the same counts.
//
// The method. Every value x maps to a 32-bit key that orders like x (key(x) < key(y) iff
// x < y). Only the top kKeyBits = 22 bits of the key are used (sign, exponent and 13
// mantissa bits): a value's "final bin" is its 22-bit prefix, a range of 1024 neighbouring
// floats of relative width 2^-13.
//   pass 1  counts the values of each level-1 bin (top 15 key bits, 32768 bins);
//   locate  turns the counts into cumulative counts and finds, for each wanted rank, the
//           level-1 bin holding it and the rank inside that bin; the distinct bins found
//           (at most one per quantile) become "slots";
//   pass 2  counts, for the values that fall in a slot's level-1 bin only, the next 7 key
//           bits (128 sub-bins per slot);
//   finish  finds the sub-bin (= final bin) holding each wanted rank and returns a value
//           inside it.
// The estimate therefore lies in the same final bin as the exact order statistic, so the
// values strictly between the two are at most the values of that one bin (the rank-error
// bound in docs/quantiles.md). For float16 and bfloat16 inputs a final bin holds a single
// representable value, and the estimate is that value: exact.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define BNB_HD __host__ __device__ __forceinline__
#else
#define BNB_HD inline
#endif

namespace bnb::quantiles {

constexpr int kMaxQuantiles = 256;
constexpr int kMinValues = 256;
constexpr int kLevel1Bits = 15;
constexpr int kLevel2Bits = 7;
constexpr int kKeyBits = kLevel1Bits + kLevel2Bits;  // 22
constexpr int kLevel1Bins = 1 << kLevel1Bits;        // 32768
constexpr int kLevel2Bins = 1 << kLevel2Bits;        // 128
constexpr int kLevel1Shift = 32 - kLevel1Bits;       // key >> 17 = level-1 bin
constexpr int kFinalShift = 32 - kKeyBits;           // key >> 10 = final bin
constexpr uint32_t kFinalBinFloats = 1u << kFinalShift;  // 1024 floats per final bin

BNB_HD uint32_t float_bits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
#endif
}

BNB_HD float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, 4);
  return f;
#endif
}

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

// The rank wanted for quantile j: torch.quantile's position p * (n - 1), split into the
// 0-based order statistic below it and the fraction towards the next one.
BNB_HD void quantile_target(int64_t n, double offset, int num_quantiles, int j, int64_t* rank, float* frac) {
  const double p = num_quantiles > 1 ? offset + j * ((1.0 - 2.0 * offset) / (num_quantiles - 1)) : offset;
  double pos = p * double(n - 1);
  if (pos < 0) pos = 0;
  if (pos > double(n - 1)) pos = double(n - 1);
  int64_t r = int64_t(pos);  // floor, pos >= 0
  if (r > n - 1) r = n - 1;
  *rank = r;
  *frac = float(pos - double(r));
}

// The estimate for a wanted rank that is the u-th (0-based) of the m values of final bin
// `final_bin` (a 22-bit key prefix). With `exact` (16-bit inputs, one value per bin) the
// bin's one representable value; otherwise the values are taken as spread evenly over the
// bin, which for a bin inside one binade is linear in the key, and the estimate is
// interpolated there (frac moves it towards the next order statistic, as torch.quantile does).
BNB_HD float final_estimate(uint32_t final_bin, uint64_t u, uint64_t m, float frac, bool exact) {
  const uint32_t first_key = final_bin << kFinalShift;
  // The float of the bin whose low 10 bits are zero: for 16-bit inputs the only one there.
  const uint32_t rep_bits = float_bits(key_value(first_key)) & ~(kFinalBinFloats - 1u);
  const float rep = bits_float(rep_bits);
  if (exact || (rep_bits & 0x7f800000u) == 0x7f800000u || m == 0) return rep;  // inf / NaN bins too
  float t = (float(u) + 0.5f + frac) / float(m);
  t = t < 0.f ? 0.f : (t > 1.f ? 1.f : t);
  const uint32_t step = uint32_t(t * float(kFinalBinFloats - 1u) + 0.5f);
  return key_value(first_key + step);
}

}  // namespace bnb::quantiles
