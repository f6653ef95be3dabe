// The 4-byte bucket entry of the nearest-code lookup (bnb/code_buckets.h) against the nearest
// code by count of midpoints: a table built on the host as code_lookup.cuh builds it on the
// GPU, then every float of every bucket that holds a midpoint (both signs), a stride through
// all the others, the clamped ends and the saturated extensions. A map of geometric spacing
// (at most one midpoint a bucket) must build exact; a linear map's crowded buckets must be
// reported, never looked up wrong.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "bnb/code_buckets.h"
#include "bnb/dtype.h"

namespace {

using namespace bnb;

float bits_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// Midpoints strictly below x: the nearest code, ties down.
uint32_t count_below(const std::vector<float>& mid, float x) {
  return uint32_t(std::lower_bound(mid.begin(), mid.end(), x) - mid.begin());
}

struct Table {
  std::vector<float> mid;         // 256: mid[255] = +inf
  std::vector<uint32_t> entry;    // kSignedEntries
  bool exact = true;              // every bucket fits the one-compare 4-byte form
};

// As build_lookup (code_lookup.cuh) fills a signed table.
Table build(const std::vector<float>& code) {
  Table t;
  t.mid.resize(kCodeSize);
  for (int i = 0; i < kCodeSize; ++i)
    t.mid[i] = i < kCodeSize - 1 ? 0.5f * (code[i] + code[i + 1]) + 0.f : INFINITY;
  t.entry.assign(kSignedEntries, 0u);
  for (int i = 0; i < kSignedEntries; ++i) {
    const uint32_t index = kSignedFirst + uint32_t(i);
    const bool negative = index < kBucketLow;
    if (negative && index > (kBucketHigh ^ kNegativeFlip)) continue;
    const uint32_t key = negative ? index ^ kNegativeFlip : index;
    float small = bits_float(key << 16), large = bits_float((key << 16) | 0xffffu);
    if (key == kBucketLow) small = 0.f;
    if (key == kBucketHigh) large = INFINITY;
    const float lo = negative ? -large : small, hi = negative ? -small : large;
    const uint32_t c = count_below(t.mid, lo);
    uint32_t e = 0;
    const bool fits = bucket_entry32(t.mid[c], hi, c, key, negative, e);
    t.entry[i] = e;
    if (!fits || (c + 1 < uint32_t(kCodeSize) && t.mid[c + 1] < hi)) t.exact = false;
  }
  return t;
}

// The 4-byte lookup of x (saturated: |x| clamped to 1 first), as lookup_code does on the GPU.
uint32_t lookup(const Table& t, float x, bool saturate) {
  float a = std::fabs(x);
  if (saturate) a = std::isnan(a) ? 0.f : std::min(a, 1.f);
  const float m = std::max(a, kClampLow);
  uint32_t mag;
  std::memcpy(&mag, &m, 4);
  int32_t xi;
  std::memcpy(&xi, &x, 4);
  const uint32_t sign = uint32_t(xi >> 31);
  const uint32_t e = t.entry[((mag >> 16) ^ (sign & kNegativeFlip)) - kSignedFirst];
  return code_from_entry32(e, mag, sign) & 0xffu;
}

// The value x is looked up as: saturation clamps |x| to 1 (NaN to the lowest bucket).
float looked_up_value(float x, bool saturate) {
  if (!saturate) return x;
  if (std::isnan(x)) return 0.f;
  return std::max(-1.f, std::min(1.f, x));
}

// Every float of the buckets holding a midpoint, a stride through the rest of [0, 1 + 2^-7),
// both signs, and the ends; returns the number of values checked.
int64_t expect_exact(const Table& t, bool saturate) {
  std::vector<uint32_t> dense;  // bucket keys that hold a midpoint
  for (float m : t.mid) {
    if (!(std::fabs(m) <= 1.f)) continue;
    uint32_t b;
    const float a = std::fabs(m);
    std::memcpy(&b, &a, 4);
    dense.push_back(b >> 16);
  }
  int64_t checked = 0;
  auto check = [&](uint32_t magnitude_bits) {
    for (uint32_t s : {0u, 0x80000000u}) {
      const float x = bits_float(magnitude_bits | s);
      const uint32_t want = count_below(t.mid, looked_up_value(x, saturate));
      const uint32_t got = lookup(t, x, saturate);
      ASSERT_EQ(got, want) << "x = " << x << " (bits " << std::hex << (magnitude_bits | s) << ")";
      ++checked;
    }
  };
  for (uint32_t key : dense)
    for (uint32_t low = 0; low < 0x10000u; ++low) check((key << 16) | low);
  for (uint32_t b = 0; b < 0x3f810000u; b += 4099) check(b);  // all of [0, 1 + 2^-7), strided
  for (uint32_t b : {0u, 1u, 0x00800000u, 0x33000000u, 0x32ffffffu, 0x3f800000u, 0x3f800001u, 0x3f80ffffu})
    check(b);
  if (saturate)  // beyond 1, infinities and NaN saturate into the table
    for (uint32_t b : {0x3f810000u, 0x40000000u, 0x7f7fffffu, 0x7f800000u, 0x7fc00000u}) check(b);
  return checked;
}

// 255 values of geometric spacing (2^(1/8): every midpoint in a bucket of its own) and zero.
std::vector<float> geometric_map() {
  std::vector<float> v = {0.f};
  for (int k = 0; k < 127; ++k) {
    const float p = std::exp2(-k / 8.f);
    v.push_back(p);
    v.push_back(-p);
  }
  v.push_back(std::exp2(-127 / 8.f) * 0.5f);
  std::sort(v.begin(), v.end());
  return v;
}

TEST(CodeBuckets, GeometricMapIsExactInFourBytes) {
  const Table t = build(geometric_map());
  ASSERT_TRUE(t.exact);
  EXPECT_GT(expect_exact(t, true), 30000000);
  expect_exact(t, false);
}

TEST(CodeBuckets, CrowdedBucketsAreReported) {
  // Half the codes within 0.01 of 0.5, where a bucket spans 2^-8: several midpoints a bucket.
  std::vector<float> crowded(kCodeSize);
  for (int i = 0; i < kCodeSize / 2; ++i) crowded[i] = -1.f + 1.49f * float(i) / float(kCodeSize / 2);
  for (int i = 0; i < kCodeSize / 2; ++i) crowded[kCodeSize / 2 + i] = 0.5f + 0.01f * float(i) / float(kCodeSize / 2);
  const Table t = build(crowded);
  // The one-compare form must not be claimed (the GPU then walks the midpoints from the
  // entry's code, as the 8-byte form does).
  EXPECT_FALSE(t.exact);
  // The entry's code is where the walk starts: never past the nearest code, which the walk
  // up the midpoints then reaches.
  for (uint32_t b = 0; b < 0x3f810000u; b += 997) {
    for (uint32_t s : {0u, 0x80000000u}) {
      const float x = bits_float(b | s);
      const float a = std::max(std::fabs(x), kClampLow);
      uint32_t mag;
      std::memcpy(&mag, &a, 4);
      const uint32_t sign = s ? ~0u : 0u;
      uint32_t c = t.entry[((mag >> 16) ^ (sign & kNegativeFlip)) - kSignedFirst] & 0xffu;
      const uint32_t want = count_below(t.mid, x);
      ASSERT_LE(c, want) << x;
      while (t.mid[c] < x) ++c;
      ASSERT_EQ(c, want) << x;
    }
  }
}

TEST(CodeBuckets, EntryFieldsAndSentinels) {
  uint32_t e = 0;
  // a midpoint above its bucket (and +inf) never counts as below
  ASSERT_TRUE(bucket_entry32(0.75f, 0.6f, 17u, 0x3f19u, false, e));
  EXPECT_EQ(e, kEntry32NoMidpoint | 17u);
  ASSERT_TRUE(bucket_entry32(INFINITY, INFINITY, 255u, kBucketHigh, false, e));
  EXPECT_EQ(e, kEntry32NoMidpoint | 255u);
  for (uint32_t low : {0u, 1u, 0xfffeu, 0xffffu}) {
    EXPECT_EQ(code_from_entry32(kEntry32NoMidpoint | 9u, (0x3f19u << 16) | low, 0u) & 0xffu, 9u);
    EXPECT_EQ(code_from_entry32(kEntry32NoMidpoint | 9u, (0x3f19u << 16) | low, ~0u) & 0xffu, 9u);
  }
  // a midpoint inside: x above it counts one more, x equal to it does not (ties go down)
  const float mid = bits_float(0x3f198000u);
  ASSERT_TRUE(bucket_entry32(mid, bits_float(0x3f19ffffu), 40u, 0x3f19u, false, e));
  EXPECT_EQ(code_from_entry32(e, 0x3f198000u, 0u) & 0xffu, 40u);
  EXPECT_EQ(code_from_entry32(e, 0x3f198001u, 0u) & 0xffu, 41u);
  EXPECT_EQ(code_from_entry32(e, 0x3f197fffu, 0u) & 0xffu, 40u);
  // a midpoint in the clamped extension below 2^-25 cannot be said in four bytes
  EXPECT_FALSE(bucket_entry32(1e-9f, bits_float(0x3300ffffu), 0u, kBucketLow, false, e));
}

}  // namespace
