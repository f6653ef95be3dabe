// The buckets of the nearest-code lookup (cuda/common/code_lookup.cuh, which says why and how
// it is built) as the host can use them too, and its 4-byte bucket entry.
//
// A bucket is all floats of one top-16-bit pattern of a magnitude (sign, exponent and the top
// kBucketMantBits mantissa bits), clamped below at 2^-25; signed tables index the buckets of
// negative values by key ^ kNegativeFlip (keys of [2^-25, 1] all have bit 12 set, so negative
// buckets land just below the positive ones, in one array).
//
// The 4-byte entry, where the 8-byte one holds the bucket's first midpoint as a float: a
// midpoint inside a bucket shares its top 16 bits with every x there, so x against it is
// decided by the low 16 bits alone, and the entry keeps those and the code. The lookup's
// shared-memory load halves (the 16-bit block-wise quantize is bound by its L1/TEX pipe on an
// H200, the lookup's random 8-byte loads being most of it), for three integer instructions
// where the 8-byte form takes one subtraction. Layout: bits 0-7 the code c of the bucket's
// lowest value; bits 15-30 the midpoint's low 16 bits (of its magnitude; complemented in a
// bucket of negative values, whose order runs the other way), or 0xffff where the bucket holds
// no midpoint (it lies above). With y the same 16 bits of x (complemented for negative x),
// t = entry - (y << 15) is negative exactly when the midpoint is below x (field < y), and the
// low byte of t is c (y << 15 leaves bits 0-14 alone): the code is the low byte of
// t + (t >> 31). Ties go down, as the 8-byte form's.
#pragma once
#include <cstdint>

#include "bnb/dtype.h"
#include "bnb/float_bits.h"

namespace bnb {

constexpr int kBucketMantBits = 7;
constexpr uint32_t kBucketLow = 0x3300;   // bucket key (top 16 float bits) of 2^-25
constexpr uint32_t kBucketHigh = 0x3f80;  // bucket key of 1.0
constexpr float kClampLow = 2.98023223876953125e-8f;  // 2^-25
constexpr uint32_t kNegativeFlip = 0x1000;
constexpr uint32_t kSignedFirst = kBucketLow ^ kNegativeFlip;
constexpr int kSignedEntries = int(kBucketHigh - kSignedFirst + 1);
constexpr int kUnsignedEntries = int(kBucketHigh - kBucketLow + 1);

constexpr uint32_t kEntry32NoMidpoint = 0xffffu << 15;

// The entry of the bucket of magnitude key `key` (negative: the bucket of negative values)
// whose highest value is hi (its clamped extension included), whose lowest value has code c
// and whose first midpoint at or above that value is `mid` (+inf past the last code). False
// where the 4-byte form cannot say it: a midpoint inside the bucket whose magnitude has other
// top 16 bits (it lies in a clamped extension; the 8-byte form is then the exact one).
BNB_HD bool bucket_entry32(float mid, float hi, uint32_t c, uint32_t key, bool negative, uint32_t& entry) {
  if (!(mid <= hi) || float_bits(mid) == 0x7f800000u) {  // above the bucket, or none (+inf): never below an x
    entry = kEntry32NoMidpoint | c;
    return true;
  }
  const uint32_t mag = float_bits(mid) & 0x7fffffffu;
  if ((mag >> 16) != key) return false;
  const uint32_t low = (mag & 0xffffu) ^ (negative ? 0xffffu : 0u);
  entry = (low << 15) | c;
  return true;
}

// The code from entry e for x whose clamped magnitude has bits `mag` and whose sign is
// `sign_mask` (all ones for negative x): only the low byte of the result is the code.
BNB_HD uint32_t code_from_entry32(uint32_t e, uint32_t mag, uint32_t sign_mask) {
  const uint32_t y = (mag ^ sign_mask) & 0xffffu;
  const uint32_t t = e - (y << 15);
  return t + (t >> 31);
}

}  // namespace bnb
