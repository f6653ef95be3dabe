// The CPU 4-bit kernels against the definition (per-block absmax, nearest code by exhaustive
// search, dequantize as code * absmax, the product as a float64 sum over dequantized weights)
// and against the reference library's codes (tests/data/quantize_4bit_cases.bin, written from
// the reference fixture by tests/dump_quantize_4bit_cases.py).
#include <gtest/gtest.h>

#include <cfloat>
#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "bnb/float16.h"
#include "bnb/quantize_4bit_cpu.h"
#include "quantize_4bit_fixture.h"

namespace {

using bnb::DType;
using bnb::QuantType4bit;

constexpr DType kDTypes[] = {DType::Float32, DType::Float16, DType::BFloat16};
constexpr QuantType4bit kQuantTypes[] = {QuantType4bit::NF4, QuantType4bit::FP4};

// Values of a dtype as raw bytes, and read back as floats.
struct Values {
  DType dtype;
  std::vector<uint8_t> bytes;
  Values(DType t, int64_t n) : dtype(t), bytes(static_cast<size_t>(n) * bnb::dtype_size(t)) {}
  float at(int64_t i) const {
    if (dtype == DType::Float32) {
      float f;
      std::memcpy(&f, bytes.data() + 4 * i, 4);
      return f;
    }
    uint16_t h;
    std::memcpy(&h, bytes.data() + 2 * i, 2);
    return dtype == DType::Float16 ? bnb::fp16_to_float(h) : bnb::bf16_to_float(h);
  }
  void set(int64_t i, float f) {
    if (dtype == DType::Float32) {
      std::memcpy(bytes.data() + 4 * i, &f, 4);
    } else {
      const uint16_t h = dtype == DType::Float16 ? bnb::float_to_fp16(f) : bnb::float_to_bf16(f);
      std::memcpy(bytes.data() + 2 * i, &h, 2);
    }
  }
  void* data() { return bytes.data(); }
  const void* data() const { return bytes.data(); }
};

Values normal_values(DType t, int64_t n, uint32_t seed, float stddev) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.f, stddev);
  Values v(t, n);
  for (int64_t i = 0; i < n; ++i) v.set(i, normal(rng));
  return v;
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

int nibble(const std::vector<uint8_t>& packed, int64_t i) {
  return (i & 1) ? (packed[i / 2] & 0xF) : (packed[i / 2] >> 4);
}

// The tables, bit for bit as the reference stores them in quant_map.
TEST(Codes4bit, TablesEqualReference) {
  const uint32_t nf4[16] = {0xbf800000, 0xbf3239b1, 0xbf066b30, 0xbeca32a0, 0xbe91a24d, 0xbe3d353f,
                            0xbdba7871, 0x00000000, 0x3da2faff, 0x3e24cae3, 0x3e7c04dd, 0x3ead033a,
                            0x3ee1a4b8, 0x3f1007ab, 0x3f3913b3, 0x3f800000};
  const uint32_t fp4[16] = {0x00000000, 0x3baaaaab, 0x3f2aaaab, 0x3f800000, 0x3eaaaaab, 0x3f000000,
                            0x3e2aaaab, 0x3e800000, 0x00000000, 0xbbaaaaab, 0xbf2aaaab, 0xbf800000,
                            0xbeaaaaab, 0xbf000000, 0xbe2aaaab, 0xbe800000};
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(bits(bnb::kNF4Code[i]), nf4[i]) << "nf4 " << i;
    EXPECT_EQ(bits(bnb::kFP4Code[i]), fp4[i]) << "fp4 " << i;
  }
}

// The code of every table entry is that entry, and NaN (an all-zero block) maps to 0.
TEST(Codes4bit, EntriesMapToThemselves) {
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(bnb::nf4_code_of(bnb::kNF4Code[i]), i);
    if (i != 8) EXPECT_EQ(bnb::fp4_code_of(bnb::kFP4Code[i]), i);  // +0.0 is code 0
  }
  EXPECT_EQ(bnb::fp4_code_of(-1e-4f), 8);  // a negative value rounding to zero keeps its sign
  EXPECT_EQ(bnb::fp4_code_of(-0.0f), 0);
  EXPECT_EQ(bnb::nf4_code_of(NAN), 0);
  EXPECT_EQ(bnb::fp4_code_of(NAN), 0);
}

// The counting rule the codes are defined by (codes_4bit.h), written out as plainly as it
// reads: one compare per threshold.
int nf4_code_by_counting(float x) {
  const bnb::Thresholds<15> t = bnb::nf4_thresholds();
  int c = 0;
  for (float th : t.t) c += x > th;
  return c;
}
int fp4_code_by_counting(float x) {
  const bnb::Thresholds<7> t = bnb::fp4_magnitude_thresholds();
  const float a = x < 0.f ? -x : x;
  int r = 0;
  for (float th : t.t) r += a > th;
  const int magnitude_bits[8] = {0, 1, 6, 7, 4, 5, 2, 3};
  return (x < 0.f ? 8 : 0) | magnitude_bits[r];
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// The binary search (nf4_code_of, fp4_code_of) gives the counting rule's code for every value
// where the two could part: each threshold, its three float neighbours either side, of both
// signs; the table entries; +-0, +-Inf, NaNs, subnormals, FLT_MAX; and a sweep over bit
// patterns of every sign and exponent.
TEST(Codes4bit, SearchEqualsCountingRule) {
  std::vector<float> xs = {0.f, -0.f, INFINITY, -INFINITY, NAN, -NAN, from_bits(0x7f800001), from_bits(0xffc00001),
                           FLT_MIN, -FLT_MIN, FLT_MAX, -FLT_MAX, FLT_TRUE_MIN, -FLT_TRUE_MIN,
                           from_bits(0x007fffff), from_bits(0x807fffff), 1.f, -1.f, 2.f, -2.f};
  const bnb::Thresholds<15> nf4 = bnb::nf4_thresholds();
  const bnb::Thresholds<7> fp4 = bnb::fp4_magnitude_thresholds();
  std::vector<float> thresholds(std::begin(nf4.t), std::end(nf4.t));
  thresholds.insert(thresholds.end(), std::begin(fp4.t), std::end(fp4.t));
  for (int i = 0; i < 16; ++i) thresholds.push_back(bnb::kNF4Code[i]), thresholds.push_back(bnb::kFP4Code[i]);
  for (float t : thresholds) {
    for (float s : {t, -t}) {
      float up = s, down = s;
      xs.push_back(s);
      for (int k = 0; k < 3; ++k) {
        up = std::nextafter(up, INFINITY), down = std::nextafter(down, -INFINITY);
        xs.push_back(up), xs.push_back(down);
      }
    }
  }
  for (uint64_t u = 0; u <= 0xffffffffu; u += 997) xs.push_back(from_bits(uint32_t(u)));
  ASSERT_GT(xs.size(), 4000000u);
  int64_t bad = 0;
  for (float x : xs) {
    if (bnb::nf4_code_of(x) != nf4_code_by_counting(x) && ++bad <= 5) ADD_FAILURE() << "nf4 x " << x;
    if (bnb::fp4_code_of(x) != fp4_code_by_counting(x) && ++bad <= 5) ADD_FAILURE() << "fp4 x " << x;
  }
  EXPECT_EQ(bad, 0);
  // The rule itself, at a few values whose codes are known by heart.
  EXPECT_EQ(nf4_code_by_counting(0.f), 7);
  EXPECT_EQ(nf4_code_by_counting(bnb::nf4_thresholds().t[7]), 7);  // on a threshold: the lower code
  EXPECT_EQ(nf4_code_by_counting(std::nextafter(bnb::nf4_thresholds().t[7], 1.f)), 8);
  EXPECT_EQ(fp4_code_by_counting(-1.f), 11);
  EXPECT_EQ(fp4_code_by_counting(0.5f), 5);
}

// The code table (the GPU's usual path) gives the search's code for every scaled value it is
// used for (|x| <= 1 + 2^-23): a sweep over their bit patterns, and every float within 2048
// units in the last place of each bucket edge and each threshold. (All 2.1e9 such floats
// agree; that check takes too long to run each time.)
TEST(Codes4bit, TableEqualsSearch) {
  bnb::CodeBucket4bit nf4[bnb::kCodeBuckets4bit], fp4[bnb::kCodeBuckets4bit];
  for (int i = 0; i < bnb::kCodeBuckets4bit; ++i) {
    nf4[i] = bnb::code_bucket_entry_4bit<QuantType4bit::NF4>(i);
    fp4[i] = bnb::code_bucket_entry_4bit<QuantType4bit::FP4>(i);
  }
  const float limit = std::nextafter(1.f, 2.f);
  int64_t checked = 0, bad = 0;
  const auto check = [&](float x) {
    if (!(std::fabs(x) <= limit)) return;
    ++checked;
    if (bnb::nf4_code_by_table(x, nf4) != bnb::nf4_code_of(x) && ++bad <= 5) ADD_FAILURE() << "nf4 x " << x;
    if (bnb::fp4_code_by_table(x, fp4) != bnb::fp4_code_of(x) && ++bad <= 5) ADD_FAILURE() << "fp4 x " << x;
  };
  for (uint64_t u = 0; u <= 0xffffffffu; u += 97) check(from_bits(uint32_t(u)));
  std::vector<float> centres = {0.f, -0.f, limit, -limit};
  for (int i = -16; i <= 16; ++i) centres.push_back(float(i) / 16.f);
  for (float t : bnb::nf4_thresholds().t) centres.push_back(t);
  for (float t : bnb::fp4_magnitude_thresholds().t) centres.push_back(t), centres.push_back(-t);
  for (float c : centres) {
    float up = c, down = c;
    check(c);
    for (int k = 0; k < 2048; ++k) {
      up = std::nextafter(up, INFINITY), down = std::nextafter(down, -INFINITY);
      check(up), check(down);
    }
  }
  EXPECT_GT(checked, 20000000);
  EXPECT_EQ(bad, 0);
}

// What the table's argument rests on: each bucket holds at most one threshold (NF4's, or FP4's
// magnitude thresholds and their negatives), and the bucket of a value is the floor of 16 x + 17
// exactly, also at the ends of the range.
TEST(Codes4bit, TableBucketsHoldOneThreshold) {
  const bnb::Thresholds<15> nf4_t = bnb::nf4_thresholds();
  const bnb::Thresholds<7> fp4_t = bnb::fp4_magnitude_thresholds();
  const std::vector<float> nf4(std::begin(nf4_t.t), std::end(nf4_t.t));
  std::vector<float> fp4;
  for (float t : fp4_t.t) fp4.push_back(t), fp4.push_back(-t);
  for (const auto& thresholds : {nf4, fp4}) {
    for (int i = 0; i < bnb::kCodeBuckets4bit; ++i) {
      const double lo = -1.0 - 1 / 16.0 + i / 16.0, hi = lo + 1 / 16.0;
      int inside = 0;
      for (float t : thresholds) inside += t >= lo && t < hi;
      EXPECT_LE(inside, 1) << "bucket " << i;
    }
  }
  const float over = std::nextafter(1.f, 2.f);  // the largest |x| the table is used for
  EXPECT_EQ(bnb::code_bucket_4bit(-over), 0);
  EXPECT_EQ(bnb::code_bucket_4bit(-1.f), 1);
  EXPECT_EQ(bnb::code_bucket_4bit(std::nextafter(0.f, -1.f)), 16);
  EXPECT_EQ(bnb::code_bucket_4bit(-0.f), 17);  // with +0.0: FP4's -0.0 gets a clear sign bit
  EXPECT_EQ(bnb::code_bucket_4bit(0.f), 17);
  EXPECT_EQ(bnb::code_bucket_4bit(over), 33);
  // FP4's table reads its byte from the top two bits of threshold - x: in a bucket with a
  // threshold |threshold - x| < 1/16 (0 or 1 at or below it, 2 or 3 above); in one without,
  // the stand-in 1.5 less any x of the table's range is positive and below 4 (0 or 1).
  for (int i = 0; i < bnb::kCodeBuckets4bit; ++i) {
    const double lo = -1.0 - 1 / 16.0 + i / 16.0, hi = lo + 1 / 16.0;
    const float t = bnb::code_bucket_entry_4bit<QuantType4bit::FP4>(i).threshold;
    EXPECT_TRUE(t == bnb::kNoThreshold4bit || (t >= lo - 1e-7 && t < hi)) << "bucket " << i;
  }
  EXPECT_TRUE(bnb::code_table_applies_4bit(1.f));
  EXPECT_TRUE(bnb::code_table_applies_4bit(FLT_MIN));
  EXPECT_FALSE(bnb::code_table_applies_4bit(0.f));
  EXPECT_FALSE(bnb::code_table_applies_4bit(FLT_MIN / 2));  // subnormal: scaled through 2^64
  EXPECT_FALSE(bnb::code_table_applies_4bit(FLT_MAX));      // its reciprocal is subnormal
}

// The thresholds ascend (the search needs it), and NF4's are the midpoints of neighbouring
// entries, as decimals rounded to float32: within one unit in the last place of the float32 sum
// halved.
TEST(Codes4bit, ThresholdsAscend) {
  const bnb::Thresholds<15> nf4 = bnb::nf4_thresholds();
  const bnb::Thresholds<7> fp4 = bnb::fp4_magnitude_thresholds();
  for (int i = 0; i < 15; ++i) {
    const float mid = 0.5f * (bnb::kNF4Code[i] + bnb::kNF4Code[i + 1]);
    EXPECT_LE(std::fabs(nf4.t[i] - mid), std::fabs(std::nextafter(mid, 2.f * mid) - mid)) << i;
  }
  for (int i = 0; i + 1 < 15; ++i) EXPECT_LT(nf4.t[i], nf4.t[i + 1]) << i;
  for (int i = 0; i + 1 < 7; ++i) EXPECT_LT(fp4.t[i], fp4.t[i + 1]) << i;
}

// x's code is a nearest entry of the table, up to the reference's rounding of its decision
// thresholds (FP4's 0.583333 sits 3.4e-7 below 7/12, so a value in between takes a code
// 6.7e-7 farther than the nearest), and FP4 keeps the sign of x.
void expect_nearest(QuantType4bit q, float x, int got, int64_t i) {
  const float* code = bnb::code_4bit(q);
  float best = INFINITY;
  for (int j = 0; j < 16; ++j) best = std::fmin(best, std::fabs(code[j] - x));
  EXPECT_LE(std::fabs(code[got] - x), best + 1e-6f) << bnb::quant_type_name(q) << " value " << i << " x " << x;
  if (q == QuantType4bit::FP4) EXPECT_EQ(got >> 3, x < 0.f ? 1 : 0) << "sign of value " << i;
}

class Quantize4bit : public ::testing::TestWithParam<std::tuple<QuantType4bit, DType, int64_t, int64_t>> {};

TEST_P(Quantize4bit, MatchesDefinition) {
  const auto [q, dtype, blocksize, n] = GetParam();
  const Values a = normal_values(dtype, n, uint32_t(n * 7 + blocksize), 2.f);
  const int64_t blocks = bnb::num_blocks(n, blocksize);
  std::vector<uint8_t> packed(static_cast<size_t>(bnb::packed_bytes_4bit(n)), 0xAA);
  std::vector<float> absmax(static_cast<size_t>(blocks), -1.f);
  bnb::cpu::quantize_4bit(dtype, a.data(), q, packed.data(), absmax.data(), n, blocksize);

  for (int64_t b = 0; b < blocks; ++b) {
    float m = 0.f;
    for (int64_t i = b * blocksize; i < std::min(n, (b + 1) * blocksize); ++i) m = std::fmax(m, std::fabs(a.at(i)));
    ASSERT_EQ(absmax[b], m) << "block " << b;
  }
  for (int64_t i = 0; i < n; ++i) expect_nearest(q, a.at(i) * (1.0f / absmax[i / blocksize]), nibble(packed, i), i);
  if (n % 2) {  // the missing last value is quantized as 0.0: NF4 code 7, FP4 code 0
    const float zero = 0.f * (1.0f / absmax[(n - 1) / blocksize]);
    EXPECT_EQ(nibble(packed, n), q == QuantType4bit::NF4 ? bnb::nf4_code_of(zero) : bnb::fp4_code_of(zero));
  }

  // Dequantize: one product, one rounding to the dtype.
  Values back(dtype, n);
  bnb::cpu::dequantize_4bit(dtype, packed.data(), bnb::code_4bit(q), bnb::BlockScales::plain(absmax.data()), back.data(), n, blocksize);
  Values want(dtype, n);
  for (int64_t i = 0; i < n; ++i) want.set(i, bnb::code_4bit(q)[nibble(packed, i)] * absmax[i / blocksize]);
  EXPECT_EQ(back.bytes, want.bytes);
}

INSTANTIATE_TEST_SUITE_P(
    TypesBlocksSizes, Quantize4bit,
    ::testing::Combine(::testing::ValuesIn(kQuantTypes), ::testing::ValuesIn(kDTypes),
                       ::testing::Values<int64_t>(32, 64, 128, 256, 1024, 4096),
                       // one value, odd, not a multiple of any block size, several blocks
                       ::testing::Values<int64_t>(1, 31, 777, 4097, 20001)));

// The quantize kernel's codes equal the search's (nf4_code_of / fp4_code_of) at and around
// every decision threshold, at +-0.0 and at the ends: a block of absmax 1 scales by exactly 1,
// so each value is its own scaled value; the kernel computes FP4's rank its own way (a sum of
// compares), and a strict or non-strict compare would differ exactly here.
TEST(Quantize4bit, CodesAtThresholdsEqualSearch) {
  for (QuantType4bit q : kQuantTypes) {
    std::vector<float> x = {1.f, -1.f, 0.f, -0.f, FLT_MIN, -FLT_MIN, 1e-30f, -1e-30f};
    const auto add_around = [&x](float t) {
      for (float v : {t, std::nextafter(t, 2.f), std::nextafter(t, -2.f)}) {
        x.push_back(v);
        x.push_back(-v);
      }
    };
    const auto nf4 = bnb::nf4_thresholds();
    const auto fp4 = bnb::fp4_magnitude_thresholds();
    for (float t : nf4.t) add_around(t);
    for (float t : fp4.t) add_around(t);
    const int64_t blocksize = 32;
    // blocks of 32 each start with +-1: every block's absmax is exactly 1
    std::vector<float> a;
    for (size_t i = 0; i < x.size(); ++i) {
      if (a.size() % blocksize == 0) a.push_back(i % 2 ? -1.f : 1.f);
      a.push_back(x[i]);
    }
    const int64_t m = int64_t(a.size());
    std::vector<uint8_t> packed(static_cast<size_t>(bnb::packed_bytes_4bit(m)));
    std::vector<float> absmax(static_cast<size_t>(bnb::num_blocks(m, blocksize)));
    bnb::cpu::quantize_4bit(DType::Float32, a.data(), q, packed.data(), absmax.data(), m, blocksize);
    for (float v : absmax) ASSERT_EQ(v, 1.f);
    for (int64_t i = 0; i < m; ++i) {
      const int want = q == QuantType4bit::NF4 ? bnb::nf4_code_of(a[size_t(i)]) : bnb::fp4_code_of(a[size_t(i)]);
      EXPECT_EQ(nibble(packed, i), want) << bnb::quant_type_name(q) << " x " << a[size_t(i)];
    }
  }
}

TEST(Quantize4bit, EmptyInputWritesNothing) {
  for (QuantType4bit q : kQuantTypes) {
    bnb::cpu::quantize_4bit(DType::Float32, nullptr, q, nullptr, nullptr, 0, 64);
    bnb::cpu::dequantize_4bit(DType::Float32, nullptr, bnb::code_4bit(q), bnb::BlockScales{}, nullptr, 0, 64);
  }
}

// The reserved-code test of packed codes (the tensor-core product's marked blocks) against
// nibble by nibble: every 16-bit half with the other half at each nibble value, and random words.
TEST(Codes4bit, HoldsReservedCodeEqualsNibbleSearch) {
  auto naive = [](uint32_t word) {
    for (int i = 0; i < 8; ++i)
      if (((word >> (4 * i)) & 15u) == bnb::kReservedCode4bit) return true;
    return false;
  };
  for (uint32_t half = 0; half < 65536; ++half)
    for (uint32_t other = 0; other < 16; ++other) {
      const uint32_t fill = other * 0x1111u;
      for (const uint32_t word : {half | (fill << 16), (half << 16) | fill})
        ASSERT_EQ(bnb::holds_reserved_code_4bit(word), naive(word)) << std::hex << word;
    }
  std::mt19937 rng(5);
  for (int i = 0; i < 1000000; ++i) {
    const uint32_t word = uint32_t(rng());
    ASSERT_EQ(bnb::holds_reserved_code_4bit(word), naive(word)) << std::hex << word;
  }
}

// A marked block's scale for the tensor-core product: NaN only for weights that hold the
// reserved code, |absmax| for the others; an unmarked block's absmax as it is.
TEST(Codes4bit, BlockScaleOrNan) {
  EXPECT_EQ(bnb::block_scale_or_nan(2.5f, true), 2.5f);
  EXPECT_EQ(bnb::block_scale_or_nan(2.5f, false), 2.5f);
  EXPECT_TRUE(std::isnan(bnb::block_scale_or_nan(-2.5f, true)));
  EXPECT_EQ(bnb::block_scale_or_nan(-2.5f, false), 2.5f);
  EXPECT_TRUE(std::isnan(bnb::block_scale_or_nan(-0.f, true)));
  EXPECT_FALSE(std::signbit(bnb::block_scale_or_nan(-0.f, false)));
}

// An all-zero block: absmax 0, and every value code 0 (the reference scales by 1 / 0).
TEST(Quantize4bit, ZeroBlock) {
  std::vector<float> a(64, 0.f);
  a[40] = 3.f;  // the second block of 32 is not all zero
  for (QuantType4bit q : kQuantTypes) {
    std::vector<uint8_t> packed(32);
    std::vector<float> absmax(2);
    bnb::cpu::quantize_4bit(DType::Float32, a.data(), q, packed.data(), absmax.data(), 64, 32);
    EXPECT_EQ(absmax[0], 0.f);
    EXPECT_EQ(absmax[1], 3.f);
    for (int i = 0; i < 16; ++i) EXPECT_EQ(packed[i], 0) << i;
    std::vector<float> back(64);
    bnb::cpu::dequantize_4bit(DType::Float32, packed.data(), bnb::code_4bit(q), bnb::BlockScales::plain(absmax.data()), back.data(), 64, 32);
    for (int i = 0; i < 64; ++i) EXPECT_EQ(back[i], a[i]) << i;
  }
}

// Nested scales (one 8-bit code a block, its group's absmax, an offset) read by dequantize as
// the plain scales they stand for, computed here: code value times |group absmax|, plus the
// offset, each rounded; below zero read as +0; NaN for the reserved code in a marked group (a
// negative group absmax). Odd sizes, a group of 256 blocks and a block not filled.
TEST(Quantize4bit, NestedScalesDequantizeAsTheirValues) {
  for (const auto& [n, blocksize] : {std::make_pair(int64_t(64) * 700 + 37, int64_t(64)),
                                     std::make_pair(int64_t(4096) * 300 + 5, int64_t(4096))}) {
    const Values w = normal_values(DType::Float32, n, uint32_t(n), 1.f);
    const int64_t blocks = bnb::num_blocks(n, blocksize);
    std::vector<uint8_t> packed(static_cast<size_t>(bnb::packed_bytes_4bit(n)));
    std::vector<float> absmax(static_cast<size_t>(blocks));
    bnb::cpu::quantize_4bit(DType::Float32, w.data(), QuantType4bit::NF4, packed.data(), absmax.data(), n, blocksize);
    std::vector<uint8_t> nested(static_cast<size_t>(blocks));
    for (int64_t b = 0; b < blocks; ++b) nested[size_t(b)] = uint8_t((b * 37 + 11) % 256);
    std::vector<float> nested_code(256), nested_absmax(static_cast<size_t>(bnb::num_blocks(blocks, 256)));
    for (int i = 0; i < 256; ++i) nested_code[size_t(i)] = -1.f + 2.f * float(i) / 255.f;
    for (size_t i = 0; i < nested_absmax.size(); ++i) nested_absmax[i] = 0.25f + 0.125f * float(i % 5);
    if (nested_absmax.size() > 1) nested_absmax[1] = -nested_absmax[1];  // a marked group
    const float offset = 0.3f;
    std::vector<float> plain(static_cast<size_t>(blocks));
    for (int64_t b = 0; b < blocks; ++b) {
      const uint8_t c = nested[size_t(b)];
      const float amax = nested_absmax[size_t(b / 256)];
      const volatile float product = nested_code[c] * std::fabs(amax);  // (rounded before the sum)
      const float v = product + offset;
      plain[size_t(b)] = amax < 0.f && c == bnb::kReservedCode8bit ? NAN : (v > 0.f ? v : 0.f);
    }
    const bnb::BlockScales scales{nullptr, nested.data(), nested_code.data(), nested_absmax.data(), &offset, 8};
    for (DType dtype : kDTypes) {
      Values by_nested(dtype, n), by_plain(dtype, n);
      bnb::cpu::dequantize_4bit(dtype, packed.data(), bnb::code_4bit(QuantType4bit::NF4), scales, by_nested.data(), n,
                                blocksize);
      bnb::cpu::dequantize_4bit(dtype, packed.data(), bnb::code_4bit(QuantType4bit::NF4),
                                bnb::BlockScales::plain(plain.data()), by_plain.data(), n, blocksize);
      int64_t bad = 0, nan = 0;
      for (int64_t i = 0; i < n; ++i) {
        const float x = by_nested.at(i), y = by_plain.at(i);
        nan += std::isnan(y);
        bad += !(std::isnan(x) ? std::isnan(y) : std::memcmp(&x, &y, 4) == 0);
      }
      EXPECT_EQ(bad, 0) << n << " values, blocks of " << blocksize;
      // (block 401, in the marked group, holds the reserved code where there are that many)
      EXPECT_EQ(nan > 0, blocks > 401) << "the marked group's reserved code";
    }
  }
}

// NF4 round trip of N(0, 1) data at blocksize 64: about 9.2% relative error (the reference's
// own figure); FP4 about 12%.
TEST(Quantize4bit, RelativeErrorOfNormalData) {
  const int64_t n = 1 << 18;
  const Values a = normal_values(DType::Float32, n, 7, 1.f);
  for (QuantType4bit q : kQuantTypes) {
    std::vector<uint8_t> packed(static_cast<size_t>(n / 2));
    std::vector<float> absmax(static_cast<size_t>(n / 64)), back(static_cast<size_t>(n));
    bnb::cpu::quantize_4bit(DType::Float32, a.data(), q, packed.data(), absmax.data(), n, 64);
    bnb::cpu::dequantize_4bit(DType::Float32, packed.data(), bnb::code_4bit(q), bnb::BlockScales::plain(absmax.data()), back.data(), n, 64);
    double err = 0, norm = 0;
    for (int64_t i = 0; i < n; ++i) {
      err += std::fabs(double(back[i]) - a.at(i));
      norm += std::fabs(double(a.at(i)));
    }
    const double rel = err / norm;
    if (q == QuantType4bit::NF4) {
      EXPECT_NEAR(rel, 0.092, 0.004);
    } else {
      EXPECT_NEAR(rel, 0.122, 0.006);
    }
  }
}

// ---- the reference library's codes ----------------------------------------------------

TEST(Quantize4bitReference, CodesAbsmaxAndDequantizedValues) {
  bnb_test::Fixture4bit fx;
  if (!bnb_test::load_fixture_4bit(fx)) GTEST_SKIP() << "tests/data/quantize_4bit_cases.bin not found";
  ASSERT_EQ(fx.cases.size(), 10u);
  const int64_t n = int64_t(fx.input.size());
  int64_t bytes_checked = 0;
  for (const bnb_test::Fixture4bitCase& fc : fx.cases) {
    SCOPED_TRACE(fc.name);
    Values a(fc.dtype, n);  // the input cast to the case's dtype
    for (int64_t i = 0; i < n; ++i) a.set(i, fx.input[i]);
    std::vector<uint8_t> packed(static_cast<size_t>(bnb::packed_bytes_4bit(n)));
    std::vector<float> absmax(static_cast<size_t>(bnb::num_blocks(n, fc.blocksize)));
    bnb::cpu::quantize_4bit(fc.dtype, a.data(), fc.quant_type, packed.data(), absmax.data(), n, fc.blocksize);
    ASSERT_EQ(packed.size(), fc.packed.size());
    int64_t bad = 0;
    for (size_t i = 0; i < packed.size(); ++i) {
      if (packed[i] != fc.packed[i] && ++bad <= 5)
        ADD_FAILURE() << "byte " << i << ": " << int(packed[i]) << " vs reference " << int(fc.packed[i]);
    }
    EXPECT_EQ(bad, 0);
    bytes_checked += int64_t(packed.size());
    EXPECT_EQ(absmax, fc.absmax);
    if (fc.dequant.empty()) continue;
    // The reference's FP4 dequantize writes -0.0 for code 8 (its table holds +0.0 there);
    // with that one entry our dequantize equals it bit for bit, and in value either way.
    float code[16];
    std::memcpy(code, bnb::code_4bit(fc.quant_type), sizeof code);
    Values plain(fc.dtype, n);
    bnb::cpu::dequantize_4bit(fc.dtype, fc.packed.data(), code, bnb::BlockScales::plain(fc.absmax.data()), plain.data(), n, fc.blocksize);
    if (fc.quant_type == QuantType4bit::FP4) code[8] = -0.0f;
    Values back(fc.dtype, n);
    bnb::cpu::dequantize_4bit(fc.dtype, fc.packed.data(), code, bnb::BlockScales::plain(fc.absmax.data()), back.data(), n, fc.blocksize);
    EXPECT_EQ(back.bytes, fc.dequant);
    Values want(fc.dtype, n);
    want.bytes = fc.dequant;
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(plain.at(i), want.at(i)) << "value " << i;
  }
  EXPECT_EQ(bytes_checked, 10 * 7499);
}

// ---- the fused product ---------------------------------------------------------------

class Gemv4bit : public ::testing::TestWithParam<std::tuple<DType, int64_t, int64_t, int64_t, int64_t>> {};

TEST_P(Gemv4bit, MatchesDequantizeThenProduct) {
  const auto [dtype, M, N, K, blocksize] = GetParam();
  const QuantType4bit q = (N + K) % 2 ? QuantType4bit::FP4 : QuantType4bit::NF4;
  const Values w = normal_values(DType::Float32, N * K, uint32_t(N * K), 1.f);
  const Values a = normal_values(dtype, M * K, uint32_t(M + K), 1.f);
  const Values bias = normal_values(dtype, N, uint32_t(N), 1.f);
  std::vector<uint8_t> packed(static_cast<size_t>(bnb::packed_bytes_4bit(N * K)));
  std::vector<float> absmax(static_cast<size_t>(bnb::num_blocks(N * K, blocksize)));
  bnb::cpu::quantize_4bit(DType::Float32, w.data(), q, packed.data(), absmax.data(), N * K, blocksize);
  Values wd(dtype, N * K);  // the weight as dequantize_4bit writes it in this dtype
  bnb::cpu::dequantize_4bit(dtype, packed.data(), bnb::code_4bit(q), bnb::BlockScales::plain(absmax.data()), wd.data(), N * K, blocksize);

  for (bool with_bias : {false, true}) {
    Values out(dtype, M * N);
    bnb::cpu::gemv_4bit(dtype, a.data(), packed.data(), bnb::code_4bit(q), bnb::BlockScales::plain(absmax.data()),
                        with_bias ? bias.data() : nullptr, out.data(), M, N, K, blocksize);
    for (int64_t m = 0; m < M; ++m) {
      for (int64_t r = 0; r < N; ++r) {
        double sum = with_bias ? bias.at(r) : 0.0, mag = std::fabs(sum);
        for (int64_t k = 0; k < K; ++k) {
          sum += double(a.at(m * K + k)) * wd.at(r * K + k);
          mag += std::fabs(double(a.at(m * K + k)) * wd.at(r * K + k));
        }
        // float32 sums of K products, then one rounding to the dtype.
        const double ulp = dtype == DType::Float32 ? 0x1p-24 : dtype == DType::Float16 ? 0x1p-11 : 0x1p-8;
        const double tol = mag * K * 0x1p-24 + std::fabs(sum) * ulp + 1e-6;
        ASSERT_NEAR(out.at(m * N + r), sum, tol) << "row " << m << " feature " << r << " bias " << with_bias;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, Gemv4bit,
    ::testing::Values(std::make_tuple(DType::Float32, 1, 64, 256, 64), std::make_tuple(DType::Float16, 1, 96, 512, 128),
                      std::make_tuple(DType::BFloat16, 3, 40, 1024, 4096),
                      std::make_tuple(DType::Float16, 16, 33, 320, 64),
                      std::make_tuple(DType::BFloat16, 17, 8, 4096, 256),
                      // K odd: rows share bytes and blocks
                      std::make_tuple(DType::Float32, 5, 7, 33, 64)));

}  // namespace
