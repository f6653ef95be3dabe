// Nearest code of a sorted 256-entry map by table lookup instead of a binary search.
//
// Why: the 8-bit optimizer requantizes two states per value, and an 8-step search per state
// made its update bound by instructions, not memory. Here a value's float bits pick a bucket
// (sign, exponent and the top kBucketMantBits mantissa bits, so a bucket spans at most 2^-7 of
// its magnitude), a byte table gives the nearest code at the bucket's edge nearest zero, and
// a short walk over the midpoints finishes. The maps this library makes (dynamic signed and
// unsigned, 2^-7 relative spacing or coarser) put at most one midpoint in a bucket, so the walk
// is one compare; any other sorted map (a quantile or linear map from a checkpoint) stays exact,
// only its walk is longer.
//
// The result equals nearest_code's: the number of midpoints strictly below x (ties go down).
#pragma once
#include <cstdint>

#include "bnb/dtype.h"

namespace bnb::cuda {

constexpr int kBucketMantBits = 7;
// Magnitudes from 2^-25 up to 2 get their own buckets; below 2^-25 is one bucket (the
// smallest dynamic-map midpoint is about 2^-22.6), above 2 joins the top one.
constexpr int kBucketExps = 26;
constexpr uint32_t kBucketMinKey = uint32_t(127 - kBucketExps + 1) << kBucketMantBits;
constexpr int kBuckets = 1 + (kBucketExps << kBucketMantBits);
// Shared memory of one map's lookup: midpoints (padded to 256 floats) and two byte tables.
constexpr int kLookupMidFloats = kCodeSize + 4;  // mid[-1] at the front, padded to 16 bytes
constexpr int kNegTable = (kBuckets + 15) / 16 * 16;  // offset of the -edge table
constexpr int kLookupBytes = kLookupMidFloats * int(sizeof(float)) + 2 * kNegTable;

struct CodeLookup {
  float* mid;    // mid[i] = (code[i] + code[i + 1]) / 2 for i < 255; mid[255] = +inf, mid[-1] = NaN: no
                 // value steps past either end
  uint8_t* pos;  // per bucket: the code of +edge; then per bucket: the code of -edge
};

// Carves one map's lookup out of `smem` (kLookupBytes bytes, 16-byte aligned).
__device__ __forceinline__ CodeLookup carve_lookup(unsigned char* smem) {
  CodeLookup t;
  t.mid = reinterpret_cast<float*>(smem) + 4;
  t.pos = smem + kLookupMidFloats * sizeof(float);
  return t;
}

__device__ __forceinline__ int bucket_of(float x) {
  const uint32_t key = (__float_as_uint(x) & 0x7fffffffu) >> (23 - kBucketMantBits);
  const int b = int(key) - int(kBucketMinKey) + 1;
  return min(max(b, 0), kBuckets - 1);
}

__device__ __forceinline__ float bucket_edge(int b) {
  return b == 0 ? 0.f : __uint_as_float((uint32_t(b - 1) + kBucketMinKey) << (23 - kBucketMantBits));
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

__device__ __forceinline__ void build_lookup(const float* __restrict__ code, CodeLookup t) {
  for (int i = threadIdx.x - 1; i < kCodeSize; i += blockDim.x) {
    t.mid[i] = i < 0 ? __int_as_float(0x7fc00000)
                     : i < kCodeSize - 1 ? 0.5f * (__ldg(code + i) + __ldg(code + i + 1)) : __int_as_float(0x7f800000);
  }
}

__device__ __forceinline__ void build_tables(CodeLookup t, int b) {
  const float e = bucket_edge(b);
  t.pos[b] = uint8_t(count_below(t.mid, e));
  t.pos[kNegTable + b] = uint8_t(count_below(t.mid, -e));
}

// A bucket holding two or more midpoints (a map finer than 2^-7 somewhere): 1, else 0.
__device__ __forceinline__ int crowded(CodeLookup t, int b) {
  const int up = t.pos[b], down = t.pos[kNegTable + b];
  const float hi = b + 1 < kBuckets ? bucket_edge(b + 1) : __int_as_float(0x7f800000);
  return (up < kCodeSize - 1 && t.mid[up + 1] < hi) || (down > 1 && t.mid[down - 2] > -hi);
}

// Builds the lookups of up to two maps (code2 may be null) with the whole CTA and returns,
// the same in every thread, whether every bucket of both holds at most one midpoint (then
// lookup_code's one-step form is exact). Ends with a barrier.
__device__ __forceinline__ bool build_lookups(const float* __restrict__ code1, const float* __restrict__ code2,
                                              CodeLookup t1, CodeLookup t2) {
  build_lookup(code1, t1);
  if (code2) build_lookup(code2, t2);
  __syncthreads();
  for (int b = threadIdx.x; b < kBuckets; b += blockDim.x) {
    build_tables(t1, b);
    if (code2) build_tables(t2, b);
  }
  __syncthreads();
  int bad = 0;
  for (int b = threadIdx.x; b < kBuckets; b += blockDim.x)
    bad |= crowded(t1, b) | (code2 ? crowded(t2, b) : 0);
  return __syncthreads_or(bad) == 0;
}

// The nearest code of x. With one_step (see build_lookups), branch-free: the bucket's code
// moved by at most one towards x. Otherwise it walks as far as needed. NaN gets a valid code
// (which one is unspecified: the update that made it has already failed).
__device__ __forceinline__ uint8_t lookup_code(const CodeLookup& t, float x, bool one_step) {
  const int b = bucket_of(x);
  const bool neg = __float_as_uint(x) >> 31;  // -0.0 counts as negative: its table says 0's code
  int q = t.pos[(neg ? kNegTable : 0) + b];
  if (one_step) {
    // up: the midpoint above the code lies below x; down: the one below it is not below x
    const float m = t.mid[neg ? q - 1 : q];
    q += neg ? -int(m >= x) : int(m < x);
  } else if (!neg) {
    while (t.mid[q] < x) ++q;
  } else {
    while (t.mid[q - 1] >= x) --q;  // stops at 0: mid[-1] is NaN
  }
  return uint8_t(q);
}

// The same for x >= 0 (or -0.0), as second moments are: no sign to look at.
__device__ __forceinline__ uint8_t lookup_code_nonneg(const CodeLookup& t, float x, bool one_step) {
  int q = t.pos[bucket_of(x)];
  if (one_step) {
    q += int(t.mid[q] < x);
  } else {
    while (t.mid[q] < x) ++q;
  }
  return uint8_t(q);
}

}  // namespace bnb::cuda
