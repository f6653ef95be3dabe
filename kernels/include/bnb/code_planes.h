// The 16 values of a 4-bit code table, as 16-bit words (a value rounded to fp16 or bf16), held
// in eight 32-bit registers as byte planes, and a packed word's codes turned into values by byte
// permutes alone: no memory access, where a table in shared memory costs one load a byte on the
// GPU's L1/TEX pipe (the fused 4-bit products' busiest unit). Torch-free; compiled for host and
// device (the host's byte permute is written out, so that the CPU tests check the same steps).
#pragma once
#include <cstdint>

#include "bnb/dtype.h"

namespace bnb {

// lo[q]: the low bytes of values 4q .. 4q + 3 (value 4q in byte 0); hi[q]: their high bytes.
struct CodePlanes {
  uint32_t lo[4], hi[4];
};

BNB_HD CodePlanes code_planes_of(const uint16_t (&values)[16]) {
  CodePlanes p = {};
#pragma unroll
  for (int e = 0; e < 16; ++e) {
    p.lo[e / 4] |= uint32_t(values[e] & 0xffu) << (8 * (e % 4));
    p.hi[e / 4] |= uint32_t(values[e] >> 8) << (8 * (e % 4));
  }
  return p;
}

// Byte n of the result is byte (sel >> 4n) & 7 of the eight bytes {b, a} (a's in 0-3). Bit 3 of
// each of sel's four low nibbles must be clear (the GPU's permute would copy a byte's sign
// instead); every selector here is so by construction, which __byte_perm cannot know: it would
// clear those bits again, one instruction a permute.
BNB_HD uint32_t byte_perm(uint32_t a, uint32_t b, uint32_t sel) {
#if defined(__CUDA_ARCH__)
  uint32_t r;
  asm("prmt.b32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(sel));
  return r;
#else
  const uint64_t bytes = (uint64_t(b) << 32) | a;
  uint32_t r = 0;
#pragma unroll
  for (int n = 0; n < 4; ++n) r |= uint32_t((bytes >> (8 * ((sel >> (4 * n)) & 7u))) & 0xffu) << (8 * n);
  return r;
#endif
}

// The value pairs of bytes 0..3 of `word` (byte b: codes hi = b >> 4 and lo = b & 15), each
// pair one register with values[hi] in its low half and values[lo] in its high half (a byte's
// high nibble is its first value, as the 4-bit formats pack them). 21 integer instructions a
// word: a permute picks, by a nibble's low three bits, its value's byte among values 0-7 and
// among 8-15; another keeps one of the two by the nibble's bit 3 (moved into the selector: byte
// j, or byte j of the second operand); two interleave low and high bytes into the pairs.
BNB_HD void code_pairs_from_planes(const CodePlanes& p, uint32_t word, uint32_t (&pairs)[4]) {
  const uint32_t index = word & 0x77777777u;
  const uint32_t pick = ((word >> 1) & 0x44444444u) | 0x32103210u;
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const uint32_t i = half ? index >> 16 : index, s = half ? pick >> 16 : pick;
    const uint32_t lo = byte_perm(byte_perm(p.lo[0], p.lo[1], i), byte_perm(p.lo[2], p.lo[3], i), s);
    const uint32_t hi = byte_perm(byte_perm(p.hi[0], p.hi[1], i), byte_perm(p.hi[2], p.hi[3], i), s);
    pairs[2 * half] = byte_perm(lo, hi, 0x4051u);      // byte 2 half: nibble 4 half + 1, then 4 half
    pairs[2 * half + 1] = byte_perm(lo, hi, 0x6273u);  // byte 2 half + 1: nibbles 4 half + 3, + 2
  }
}

}  // namespace bnb
