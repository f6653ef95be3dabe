// The byte-permute dequantization of 4-bit codes (bnb/code_planes.h) against a plain table:
// every byte in every position of a word, for the NF4 and FP4 tables rounded to fp16 and bf16
// and for random 16-bit values (every byte value in every plane position), and the host's
// permute against its definition.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>

#include "bnb/code_planes.h"
#include "bnb/codes_4bit.h"
#include "bnb/float16.h"

namespace {

using namespace bnb;

// The pair a table of code pairs holds for byte b: values[b >> 4] low, values[b & 15] high.
uint32_t table_pair(const uint16_t (&values)[16], uint32_t b) {
  return uint32_t(values[b >> 4]) | (uint32_t(values[b & 15]) << 16);
}

void expect_pairs_match_table(const uint16_t (&values)[16], std::mt19937& rng) {
  const CodePlanes planes = code_planes_of(values);
  auto check = [&](uint32_t word) {
    uint32_t pairs[4];
    code_pairs_from_planes(planes, word, pairs);
    for (int b = 0; b < 4; ++b)
      ASSERT_EQ(pairs[b], table_pair(values, (word >> (8 * b)) & 0xffu)) << "word " << word << " byte " << b;
  };
  for (uint32_t b = 0; b < 256; ++b)
    for (int pos = 0; pos < 4; ++pos) check((rng() & ~(0xffu << (8 * pos))) | (b << (8 * pos)));
  for (int i = 0; i < 20000; ++i) check(rng());
  check(0u);
  check(0xffffffffu);
}

TEST(CodePlanes, FourBitTablesInBothDtypes) {
  std::mt19937 rng(7);
  for (QuantType4bit q : {QuantType4bit::NF4, QuantType4bit::FP4}) {
    uint16_t half[16], bf16[16];
    for (int e = 0; e < 16; ++e) {
      half[e] = float_to_fp16(code_4bit(q)[e]);
      bf16[e] = float_to_bf16(code_4bit(q)[e]);
    }
    expect_pairs_match_table(half, rng);
    expect_pairs_match_table(bf16, rng);
  }
}

TEST(CodePlanes, RandomValues) {
  std::mt19937 rng(11);
  for (int t = 0; t < 50; ++t) {
    uint16_t values[16];
    for (auto& v : values) v = uint16_t(rng());
    expect_pairs_match_table(values, rng);
  }
}

TEST(CodePlanes, HostPermuteMatchesItsDefinition) {
  std::mt19937 rng(3);
  for (int i = 0; i < 100000; ++i) {
    const uint32_t a = rng(), b = rng(), sel = rng() & 0x7777u;
    const uint8_t bytes[8] = {uint8_t(a), uint8_t(a >> 8), uint8_t(a >> 16), uint8_t(a >> 24),
                              uint8_t(b), uint8_t(b >> 8), uint8_t(b >> 16), uint8_t(b >> 24)};
    const uint32_t r = byte_perm(a, b, sel);
    for (int n = 0; n < 4; ++n) ASSERT_EQ((r >> (8 * n)) & 0xffu, bytes[(sel >> (4 * n)) & 7u]);
  }
}

}  // namespace
