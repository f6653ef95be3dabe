// The two 4-bit code formats (NF4, FP4): their 16-value tables and the rule that maps a
// value in [-1, 1] (already multiplied by 1 / its block's absmax, block_scale_4bit) to a 4-bit code.
//
// The rule is the one the 4-bit checkpoints people have were written with, so our codes equal
// theirs bit for bit:
// - NF4: the code is the number of decision thresholds strictly below x. The thresholds are
//   the midpoints of neighbouring NF4 values as decimals rounded to float32 (written out below;
//   four are one unit in the last place from 0.5f * (code[i] + code[i + 1])). A value exactly
//   on a midpoint takes the lower code.
// - FP4 is sign-magnitude: bit 3 is set for x < 0 (so -0.0 and NaN get a clear sign bit), and
//   the low three bits encode |x|, again by counting the thresholds strictly below it. The
//   table is not sorted: the low three bits of an entry grow with its magnitude as
//   0, 1, 6, 7, 4, 5, 2, 3. The thresholds are the midpoints of neighbouring magnitudes as the
//   reference writes them, short decimals rounded to float32; five of the seven are not the
//   float32 midpoints (0.583333 is 3.4e-7 below 7/12), and fp16/bf16 inputs scaled by their
//   absmax land exactly on them, so they are spelled out rather than computed.
// Both rules send NaN (an all-zero block scaled by 1 / 0) to code 0, as the reference does.
#pragma once
#include <cfloat>
#include <cmath>
#include <cstdint>

#include "bnb/dtype.h"
#include "bnb/float_compare.h"
#include "bnb/nonfinite.h"

namespace bnb {

enum class QuantType4bit : int { NF4 = 0, FP4 = 1 };

inline const char* quant_type_name(QuantType4bit t) { return t == QuantType4bit::NF4 ? "nf4" : "fp4"; }

// Normal-float: quantiles of N(0, 1) scaled to [-1, 1], with an exact zero; sorted ascending.
inline constexpr float kNF4Code[16] = {
    -1.0f,
    -0.6961928009986877f,
    -0.5250730514526367f,
    -0.39491748809814453f,
    -0.28444138169288635f,
    -0.18477343022823334f,
    -0.09105003625154495f,
    0.0f,
    0.07958029955625534f,
    0.16093020141124725f,
    0.24611230194568634f,
    0.33791524171829224f,
    0.44070982933044434f,
    0.5626170039176941f,
    0.7229568362236023f,
    1.0f,
};

// FP4 (1 sign bit, 2 exponent bits, 1 mantissa bit, no infinities) divided by its largest
// value, 6 (indexed by the code: bit 3 the sign). Entry 8 is +0.0 in the table the reference
// stores in quant_map; its own FP4 dequantize writes -0.0 there (equal in value).
inline constexpr float kFP4Code[16] = {
    0.0f, 0.0052083334885537624f, 0.6666666865348816f, 1.0f, 0.3333333432674408f, 0.5f, 0.1666666716337204f, 0.25f,
    0.0f, -0.0052083334885537624f, -0.6666666865348816f, -1.0f, -0.3333333432674408f, -0.5f, -0.1666666716337204f, -0.25f,
};

inline const float* code_4bit(QuantType4bit t) { return t == QuantType4bit::NF4 ? kNF4Code : kFP4Code; }

// The decision thresholds, ascending (the only place they are written).
template <int N> struct Thresholds { float t[N]; };
BNB_HD constexpr Thresholds<15> nf4_thresholds() {
  return {{-0.8480964004993439f, -0.6106329262256622f, -0.4599952697753906f, -0.33967943489551544f,
           -0.23460740596055984f, -0.13791173323988914f, -0.045525018125772476f, 0.03979014977812767f,
           0.1202552504837513f, 0.2035212516784668f, 0.2920137718319893f, 0.3893125355243683f,
           0.5016634166240692f, 0.6427869200706482f, 0.8614784181118011f}};
}
// FP4's, between neighbouring magnitudes.
BNB_HD constexpr Thresholds<7> fp4_magnitude_thresholds() {
  return {{0.00260417f, 0.0859375f, 0.20833333f, 0.29166667f, 0.4166667f, 0.583333f, 0.8333333f}};
}

// The number of thresholds t[0..N-1] (ascending, N = 2^L - 1) strictly below x, by a
// branch-free binary search: x against the middle one says which half can still count, a
// select per threshold moves that half into place, and the search goes on in it. L compares
// and N - L selects instead of N compares and N adds; on the GPU the thresholds stay
// immediates (no table indexed per value). NaN compares false at every level: 0.
template <int N> BNB_HD int count_below(float x, const float (&t)[N]) {
  static_assert(((N + 1) & N) == 0, "2^L - 1 thresholds");
  if constexpr (N == 1) {
    return x > t[0] ? 1 : 0;
  } else {
    constexpr int H = N / 2;  // thresholds in each half, either side of t[H]
    const bool upper = x > t[H];  // then t[0..H] are all below x
    float half[H];
    for (int i = 0; i < H; ++i) half[i] = upper ? t[H + 1 + i] : t[i];
    return (upper ? H + 1 : 0) + count_below(x, half);
  }
}

// NF4 code of x.
BNB_HD uint8_t nf4_code_of(float x) {
  constexpr Thresholds<15> kT = nf4_thresholds();
  return uint8_t(count_below(x, kT.t));
}

// The FP4 code of the magnitude of rank r (0..7) among the eight: the three bits that
// magnitude has in the table (rank r's at nibble r of 0x32547610) and `sign` (8: negative, or 0).
BNB_HD uint8_t fp4_code_of_rank(uint32_t sign, int r) { return uint8_t(sign | ((0x32547610u >> (4 * r)) & 7u)); }

// FP4 code of x: the rank of |x| among the eight magnitudes.
BNB_HD uint8_t fp4_code_of(float x) {
  constexpr Thresholds<7> kT = fp4_magnitude_thresholds();
  const uint32_t sign = x < 0.f ? 8u : 0u;
  return fp4_code_of_rank(sign, count_below(fabsf(x), kT.t));  // NaN stays NaN: rank 0
}

// The same codes by table, for the scaled values of a block where code_table_applies_4bit
// (|x| at most 1 + 2^-23), the GPU's usual case: a compare-and-select
// search spends some twenty integer-pipe instructions a value, a table lookup a few.
// Buckets of width 1/16: bucket i holds x in [-1 + (i - 1) / 16, -1 + i / 16) (bucket 0 the
// values just below -1 that rounding of the scale allows), for both formats. Each bucket holds
// at most one threshold (NF4's, or FP4's magnitude thresholds t and their negatives). The
// bucket is floor(16 x + 17), which the GPU computes with one fused multiply-add rounded down
// onto the float grid of [2^23, 2^24), whose spacing is 1: the bits of 16 x + 17 + 2^23 so
// rounded, less 2^23's, are the bucket, exactly, with no instruction on the integer pipe
// (-0.0 lands in bucket 17 with +0.0, which gives FP4's -0.0 a clear sign bit). A bucket's
// entry is its threshold (kNoThreshold4bit when it holds none) and the codes either side:
// - NF4: the code of the values at or below it; above it the code is one more.
// - FP4 (not monotonic in x): bytes 0 and 1 hold the code at or below the threshold, bytes 2
//   and 3 the code above, so that the byte is the top two bits of threshold - x (whose
//   magnitude is below 1/16 in a bucket with a threshold, and positive and below 4 in one
//   without). FP4 breaks a tie towards the smaller magnitude, which for a negative threshold
//   -t is the code above it: the entry holds the float just below -t instead, so that x = -t
//   lies above it.
// Both read their compare from a sign bit (float_compare.h), which keeps all but a few
// instructions a value off the integer pipe the quantize kernel is bound by.
struct alignas(8) CodeBucket4bit {  // (8-aligned: the GPU loads an entry in one 8-byte access)
  float threshold;
  uint32_t codes;
};
static_assert(sizeof(CodeBucket4bit) == 8 && alignof(CodeBucket4bit) == 8, "one 8-byte entry");
constexpr int kCodeBuckets4bit = 64;
constexpr float kNoThreshold4bit = 1.5f;  // above every |x| the table is used for, and below 2
constexpr float kBucketOffset4bit = 17.f;
constexpr uint32_t kBucketBits4bit = 0x4b000000u;  // 2^23's bits: from here to 2^24 the floats are the integers

// The bucket of x (floor(16 x + offset) for an integral offset, 16 x + offset in [0, 2^23)) plus
// kBucketBits4bit: that integer's bits as a float, which a kernel turns into a shared-memory
// address with one instruction. (On the GPU: 16 x + offset + 2^23 rounded down, exactly.)
BNB_HD uint32_t code_bucket_bits_4bit(float x, float offset) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(__fmaf_rd(x, 16.f, 8388608.f + offset));
#else
  return kBucketBits4bit + uint32_t(std::floor(16.0 * double(x)) + double(offset));  // offset: an integer
#endif
}
BNB_HD uint32_t code_bucket_bits_4bit(float x) { return code_bucket_bits_4bit(x, kBucketOffset4bit); }
BNB_HD int code_bucket_4bit(float x) { return int(code_bucket_bits_4bit(x) - kBucketBits4bit); }

// Bucket i's entry, from the thresholds above (FP4's codes from fp4_code_of either side of the
// threshold, so that the table follows the search by construction).
template <QuantType4bit Q> BNB_HD CodeBucket4bit code_bucket_entry_4bit(int i) {
  const float lo = -1.f - 1.f / 16.f + float(i) / 16.f, hi = lo + 1.f / 16.f;
  if constexpr (Q == QuantType4bit::NF4) {
    const Thresholds<15> t = nf4_thresholds();
    int below = 0;  // thresholds below the bucket
    float inside = kNoThreshold4bit;
    for (int k = 0; k < 15; ++k) {
      below += t.t[k] < lo;
      if (t.t[k] >= lo && t.t[k] < hi) inside = t.t[k];
    }
    return {inside, uint32_t(below)};
  } else {
    const Thresholds<7> t = fp4_magnitude_thresholds();
    float inside = kNoThreshold4bit;
    for (int k = 0; k < 7; ++k) {
      if (t.t[k] >= lo && t.t[k] < hi) inside = t.t[k];
      if (-t.t[k] >= lo && -t.t[k] < hi) inside = bits_float(float_bits(-t.t[k]) + 1u);  // just below -t
    }
    const float at = inside < kNoThreshold4bit ? inside : 0.5f * (lo + hi);
    const uint32_t below = fp4_code_of(at);
    const float next = bits_float(at < 0.f ? float_bits(at) - 1u : float_bits(at) + 1u);  // the float above `at`
    const uint32_t above = inside < kNoThreshold4bit ? fp4_code_of(next) : below;
    return {inside, below | below << 8 | above << 16 | above << 24};
  }
}

// Whether a block's scaled values are in the table's range: its absmax and 1 / absmax are
// both normal floats (then x * RN(1 / absmax) is at most 1 + 2^-23 for |x| <= absmax; a
// subnormal reciprocal, of an absmax above 2^126, is too coarse for that).
BNB_HD bool code_table_applies_4bit(float absmax) { return absmax >= FLT_MIN && absmax <= 0x1p126f; }

// The codes by table (`table`: code_bucket_entry_4bit of 0..63) of a scaled value x of a block
// where the table applies; equal to nf4_code_of / fp4_code_of there (for every such x: the
// tests check all floats of magnitude up to 1 + 2^-23). (Thresholds are never -0.0, which is
// what below_bit asks of them.)
BNB_HD uint8_t nf4_code_from_entry(float x, CodeBucket4bit e) { return uint8_t(e.codes + below_bit(e.threshold, x)); }
BNB_HD uint8_t fp4_code_from_entry(float x, CodeBucket4bit e) {
  // (the top two bits of threshold - x: 2 or 3 where x lies above it, else 0 or 1)
  return byte_of(e.codes, float_bits(sub_rn(e.threshold, x)) >> 30);
}
template <QuantType4bit Q> BNB_HD uint8_t code_4bit_from_entry(float x, CodeBucket4bit e) {
  if constexpr (Q == QuantType4bit::NF4) {
    return nf4_code_from_entry(x, e);
  } else {
    return fp4_code_from_entry(x, e);
  }
}
template <QuantType4bit Q> BNB_HD uint8_t code_4bit_by_table(float x, const CodeBucket4bit* table) {
  return code_4bit_from_entry<Q>(x, table[code_bucket_4bit(x)]);
}
BNB_HD uint8_t nf4_code_by_table(float x, const CodeBucket4bit* table) {
  return code_4bit_by_table<QuantType4bit::NF4>(x, table);
}
BNB_HD uint8_t fp4_code_by_table(float x, const CodeBucket4bit* table) {
  return code_4bit_by_table<QuantType4bit::FP4>(x, table);
}

template <QuantType4bit Q> BNB_HD uint8_t code_4bit_of(float x) {
  if constexpr (Q == QuantType4bit::NF4) {
    return nf4_code_of(x);
  } else {
    return fp4_code_of(x);
  }
}

// The scale a block's values are multiplied by before the search: 1 / absmax, IEEE-rounded
// (an all-zero block gets infinity, so its values become NaN and code 0, as in the reference).
BNB_HD BlockScale block_scale_4bit(float absmax) { return block_scale(absmax, false); }

// The 4-bit code of x (q: the code of its scaled value xs) in a block that is `marked`
// (nonfinite.h): non-finite values take the reserved code 8; a finite value that would take it
// takes NF4's nearer neighbour of 0.0796 (7: 0.0, 9: 0.161), or FP4's +0.0 for its -0.0.
template <QuantType4bit Q> BNB_HD uint8_t marked_code_4bit(uint8_t q, float x, float xs, bool marked) {
  if (!marked) return q;
  if (!is_finite_value(x)) return kReservedCode4bit;
  if (q != kReservedCode4bit) return q;
  if constexpr (Q == QuantType4bit::NF4) {
    constexpr float kSplit = 0.08046510070562363f;  // 0.5f * (kNF4Code[7] + kNF4Code[9])
    return xs > kSplit ? 9 : 7;
  } else {
    return 0;
  }
}

// The code of x in a block with this scale: the one every 4-bit quantize kernel writes.
template <QuantType4bit Q> BNB_HD uint8_t code_4bit_in_block(float x, BlockScale scale, bool marked) {
  const float xs = scale.apply(x);
  return marked_code_4bit<Q>(code_4bit_of<Q>(xs), x, xs, marked);
}

// Two codes a byte, the first value in the high nibble.
BNB_HD uint8_t pack_4bit(uint8_t first, uint8_t second) { return uint8_t((first << 4) | (second & 0xF)); }

// Bytes of n packed codes: an odd n leaves the last byte's low nibble for a missing value,
// which is quantized as 0.0 (as the reference pads its last block).
inline int64_t packed_bytes_4bit(int64_t n) { return (n + 1) / 2; }

}  // namespace bnb
