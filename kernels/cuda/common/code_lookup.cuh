// Nearest code of a sorted 256-entry map by table lookup instead of a binary search.
//
// Why: the 8-bit optimizer requantizes two states per value, and an 8-step search per state
// made its update bound by instructions, not memory; the block-wise quantize of 16-bit input was
// bound the same way by its one search a value. Here a value's float bits pick a bucket
// (sign, exponent and the top kBucketMantBits mantissa bits: the top 16 bits of the float, so
// a bucket spans at most 2^-7 of its magnitude). Each bucket's entry holds, in one 8-byte
// word, the code c of its lowest value and the first midpoint m at or above that value; the
// code of x is then c + (m < x). That holds where no bucket holds two midpoints, as with the
// maps this library makes (dynamic signed and unsigned, 2^-7 relative spacing or coarser);
// any other sorted map (a quantile or linear map from a checkpoint) stays exact by walking
// the midpoints up from c.
//
// Magnitudes are clamped below at 2^-25 before the bucket is taken (the smallest dynamic-map
// midpoint is about 2^-22.6); the lowest bucket stands for everything below it, the highest
// (1.0) for everything up to 1 + 2^-7, which the one-compare form allows only where no
// midpoint lies in those extensions (checked when the tables are built). No clamp above:
// callers pass finite values scaled by the reciprocal of the exact maximum magnitude of the
// values scaled (optimizer.cuh: inverse_block_max, within an ulp or two of 1 / m), so |x| <=
// 1 + 2^-21; a clamp there cost an instruction a value and state. A caller whose maximum was
// found elsewhere (the tensor-wise state's, by a pre-pass kernel) asks for the clamp, as does
// the block-wise quantize (quantize/blockwise.cuh), whose values may be NaN or infinite: the
// clamp (saturation) keeps any x inside the table, and that kernel replaces such a value's
// code afterwards (nonfinite.h).
//
// The result equals nearest_code's: the number of midpoints strictly below x (ties go down).
// The one compare is read from the sign of m - x (float_compare.h: a subtraction on the
// floating-point pipe instead of a compare and a select on the integer pipe the update is
// bound by); midpoints are stored with +0.0 for -0.0, as that asks.
#pragma once
#include <cstdint>
#include <type_traits>

#include "bnb/code_buckets.h"
#include "bnb/dtype.h"
#include "bnb/float_compare.h"

namespace bnb::cuda {

// The buckets (kBucketLow .. kBucketHigh, kNegativeFlip, kSignedFirst, the entry counts):
// bnb/code_buckets.h.
// Midpoints: mid[i] between code i and i + 1 for i < 255, mid[255] = +inf (no walk steps
// past the last code).
constexpr int kMidFloats = kCodeSize;

struct CodeLookup {
  float2* entry;  // per bucket: (first midpoint at or above its lowest value, that value's code as bits)
  float* mid;
};

// The same with 4-byte entries (bnb/code_buckets.h): half the shared-memory traffic a lookup.
struct CodeLookup32 {
  uint32_t* entry;
  float* mid;
};

// Bytes of an entry (8 or 4), and the shared memory of one map's lookup: the entries, then the
// midpoints.
template <typename Lookup>
constexpr int kEntryBytes = int(sizeof(std::remove_pointer_t<decltype(Lookup::entry)>));
template <typename Lookup = CodeLookup>
constexpr int lookup_bytes(bool signed_values) {
  return (signed_values ? kSignedEntries : kUnsignedEntries) * kEntryBytes<Lookup> + kMidFloats * int(sizeof(float));
}

// Carves one map's lookup out of `smem` (lookup_bytes<Lookup>(signed_values) bytes, 8-byte
// aligned).
template <typename Lookup = CodeLookup>
__device__ __forceinline__ Lookup carve_lookup(unsigned char* smem, bool signed_values) {
  Lookup t;
  t.entry = reinterpret_cast<decltype(t.entry)>(smem);
  t.mid = reinterpret_cast<float*>(smem + (signed_values ? kSignedEntries : kUnsignedEntries) * kEntryBytes<Lookup>);
  return t;
}

// Midpoints strictly below x, by binary search (used only to build the tables).
__device__ __forceinline__ int count_below(const float* mid, float x) {
  int lo = 0, hi = kCodeSize - 1;  // the answer lies in [lo, hi]
  while (lo < hi) {
    const int m = (lo + hi) / 2;
    if (mid[m] < x) lo = m + 1;
    else hi = m;
  }
  return lo;
}

// The same, walking from c, the count of a nearby value (the table is built in runs of
// neighbouring buckets, whose counts differ by a step or two).
__device__ __forceinline__ int count_below_from(const float* mid, float x, int c) {
  while (c < kCodeSize - 1 && mid[c] < x) ++c;
  while (c > 0 && !(mid[c - 1] < x)) --c;
  return c;
}

// The values that land in bucket `key` (sign 0 or 1), as the closed range [lo, hi], with the
// clamped extensions at both ends.
__device__ __forceinline__ void bucket_range(uint32_t key, bool negative, float& lo, float& hi) {
  const float inf = __int_as_float(0x7f800000);
  float small = __uint_as_float(key << 16), large = __uint_as_float((key << 16) | 0xffffu);
  if (key == kBucketLow) small = 0.f;
  if (key == kBucketHigh) large = inf;
  lo = negative ? -large : small;
  hi = negative ? -small : large;
}

// The bucket `key` (sign `negative`) as its closed range [lo, hi] and c, the count of midpoints
// below lo (c on entry: the count of a nearby bucket's lowest value, or -1).
__device__ __forceinline__ void locate_bucket(const float* mid, uint32_t key, bool negative, int& c, float& lo,
                                              float& hi) {
  bucket_range(key, negative, lo, hi);
  c = c < 0 ? count_below(mid, lo) : count_below_from(mid, lo, c);
}

// Fills the entry of one bucket (c as locate_bucket takes it); returns 1 where only the walk
// is exact for the bucket (it holds two or more midpoints; a 4-byte entry also where it cannot
// say the midpoint), else 0.
__device__ __forceinline__ int build_entry(CodeLookup t, int index, uint32_t key, bool negative, int& c) {
  float lo, hi;
  locate_bucket(t.mid, key, negative, c, lo, hi);
  t.entry[index] = make_float2(t.mid[c], __int_as_float(c));
  return c + 1 < kCodeSize && t.mid[c + 1] < hi;
}
__device__ __forceinline__ int build_entry(CodeLookup32 t, int index, uint32_t key, bool negative, int& c) {
  float lo, hi;
  locate_bucket(t.mid, key, negative, c, lo, hi);
  uint32_t e = 0;
  const bool fits = bucket_entry32(t.mid[c], hi, uint32_t(c), key, negative, e);
  t.entry[index] = e;
  return !fits || (c + 1 < kCodeSize && t.mid[c + 1] < hi);
}

// Builds the lookup of `code` (map_size entries: 256, or 16 for 4-bit codes) with the whole CTA
// (signed_values: buckets of both signs) and returns, the same in every thread, whether the
// one-compare form is exact for it. A smaller map's midpoints past its last are +inf, so that
// every search and walk stops at its last code. Each thread fills a run of neighbouring
// buckets. Ends with a barrier.
template <typename Lookup>
__device__ __forceinline__ bool build_lookup(const float* __restrict__ code, Lookup t, bool signed_values,
                                             int map_size = kCodeSize) {
  for (int i = threadIdx.x; i < kCodeSize; i += blockDim.x)
    t.mid[i] = i < map_size - 1 ? positive_zero(0.5f * (__ldg(code + i) + __ldg(code + i + 1))) : __int_as_float(0x7f800000);
  __syncthreads();
  const int entries = signed_values ? kSignedEntries : kUnsignedEntries;
  const int run = (entries + int(blockDim.x) - 1) / int(blockDim.x);
  const int stop = min(entries, (int(threadIdx.x) + 1) * run);
  int crowded = 0, c = -1;
  for (int i = int(threadIdx.x) * run; i < stop; ++i) {
    if (signed_values) {
      const uint32_t index = kSignedFirst + uint32_t(i);
      const bool negative = index < kBucketLow;
      if (negative && index > (kBucketHigh ^ kNegativeFlip)) continue;  // the gap between the halves
      crowded |= build_entry(t, i, negative ? index ^ kNegativeFlip : index, negative, c);
    } else {
      crowded |= build_entry(t, i, kBucketLow + uint32_t(i), false, c);
    }
  }
  return __syncthreads_or(crowded) == 0;
}

// The code of x from entry e: one compare (one_step), else a walk up the midpoints. For finite
// x the code is below the map's size (midpoints past its last are +inf), so callers may pack
// codes by adding them at their bit positions, without masks; for NaN or infinite x (reached
// only through the saturated lookup: the optimizer stores a non-finite state as 0 before
// requantizing) the one-compare form may return the map's size, which such callers discard.
__device__ __forceinline__ uint32_t finish_lookup(const CodeLookup& t, float2 e, float x, bool one_step) {
  uint32_t q = __float_as_uint(e.y);
  if (one_step) {
    q += below_bit(e.x, x);
  } else {
    while (t.mid[q] < x) ++q;
  }
  return q;
}

// The nearest code of any x (a signed table). Saturate: the magnitude is clamped to 1 before the
// bucket is taken, for callers whose scale is not the exact maximum of the values it scales.
// The signed table's bucket of x: its clamped magnitude's bits, its sign (all ones for negative
// x and -0.0) and the entry's index.
struct SignedBucket {
  uint32_t mag, sign, index;
};
template <bool Saturate>
__device__ __forceinline__ SignedBucket signed_bucket(float x) {
  const float m = fmaxf(Saturate ? __saturatef(fabsf(x)) : fabsf(x), kClampLow);
  const uint32_t mag = __float_as_uint(m), sign = uint32_t(__float_as_int(x) >> 31);
  return {mag, sign, ((mag >> 16) ^ (sign & kNegativeFlip)) - kSignedFirst};
}

template <bool Saturate = false>
__device__ __forceinline__ uint32_t lookup_code(const CodeLookup& t, float x, bool one_step) {
  return finish_lookup(t, t.entry[signed_bucket<Saturate>(x).index], x, one_step);
}

// The same from 4-byte entries: only the low byte of the result is the code (callers narrow it).
template <bool Saturate = false>
__device__ __forceinline__ uint32_t lookup_code(const CodeLookup32& t, float x, bool one_step) {
  const SignedBucket b = signed_bucket<Saturate>(x);
  const uint32_t e = t.entry[b.index];
  if (one_step) return code_from_entry32(e, b.mag, b.sign);
  uint32_t q = e & 0xffu;
  while (t.mid[q] < x) ++q;
  return q;
}

// The nearest code of x >= 0 (or -0.0), as second moments are: an unsigned table.
template <bool Saturate = false>
__device__ __forceinline__ uint32_t lookup_code_nonneg(const CodeLookup& t, float x, bool one_step) {
  const float m = fmaxf(Saturate ? __saturatef(x) : x, kClampLow);  // (-0.0 as well)
  return finish_lookup(t, t.entry[(__float_as_uint(m) >> 16) - kBucketLow], x, one_step);
}

// The 4-bit second moment's map, (i + 1) / 16 for i < 16 (create_optimizer_4bit_map), needs no
// table: its midpoints (2i + 3) / 32 lie below x ceil(16x - 1.5) times, clamped to [0, 15]. For
// x in [0, 1 + 2^-21] (as lookup_code asks) 16x - 1.5 is exact where 16x >= 1 (1.5 is a
// multiple of the ulp of 16x there, and the difference needs no more bits); below, it is under
// -0.5, and the clamp gives code 0 as the exact value would; then 1.5 * 2^23 added rounding up
// leaves the ceiling in the low mantissa bits (whose ulp is 1). Checked over every float.
// Exact ties go down, as the lookup's. Four instructions where the lookup takes about nine.
__device__ __forceinline__ uint32_t linear16_code(float x) {
  const float y = fmaxf(fmaf(x, 16.f, -1.5f), 0.f);
  return __float_as_uint(__fadd_ru(y, 12582912.f)) - 0x4b400000u;  // the bits of 1.5 * 2^23
}

// Whether the 16 values of `code` are that map (the same answer in every thread; a barrier).
__device__ __forceinline__ bool is_linear16_map(const float* __restrict__ code) {
  const int i = int(threadIdx.x);
  return __syncthreads_and(i >= 16 || __ldg(code + i) == float(i + 1) * 0.0625f) != 0;
}

}  // namespace bnb::cuda
