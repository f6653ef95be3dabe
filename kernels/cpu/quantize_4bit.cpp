// Block-wise 4-bit quantization and dequantization on the CPU. Threads take whole blocks;
// every block size is even, so a byte never straddles two blocks or two threads.
#include <algorithm>
#include <cmath>

#include "bnb/nonfinite.h"
#include "bnb/quantize_4bit_cpu.h"
#include "block_absmax.h"
#include "blockwise_dequantize.h"
#include "element_io.h"

namespace bnb::cpu {

namespace {

constexpr int kChunk = 256;  // values of a block coded at a time (even: chunks start on a byte)

// code_4bit_in_block, in a form the compiler makes branch-free code of: FP4's rank of |x| as a
// sum of compares (the number of thresholds strictly below it, as count_below counts them;
// NaN: 0) instead of the search's selects. Tested against the search at every threshold.
template <QuantType4bit Q> uint8_t code_in_block(float x, BlockScale scale, bool marked) {
  if constexpr (Q == QuantType4bit::NF4) {
    return code_4bit_in_block<Q>(x, scale, marked);
  } else {
    constexpr Thresholds<7> kT = fp4_magnitude_thresholds();
    const float xs = scale.apply(x), m = std::fabs(xs);
    int rank = 0;
    for (int k = 0; k < 7; ++k) rank += m > kT.t[k];
    return marked_code_4bit<Q>(fp4_code_of_rank(xs < 0.f ? 8u : 0u, rank), x, xs, marked);
  }
}

template <DType T, QuantType4bit Q>
void quantize_blocks(const void* A, uint8_t* out, float* absmax, int64_t n, int64_t blocksize) {
  using E = Element<T>;
  const auto* a = static_cast<const typename E::storage*>(A);
  const int64_t blocks = num_blocks(n, blocksize);
#pragma omp parallel for schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const int64_t lo = b * blocksize, hi = std::min(n, lo + blocksize);
    float amax;
    bool marked;
    absmax[b] = stored_block_absmax<E>(a, lo, hi, amax, marked);
    const BlockScale scale = block_scale_4bit(amax);
    // The codes of a chunk first, then packed: the code loop alone is one the compiler makes
    // branch-free vector code of (with the packing in it, its selects became branches that
    // random data mispredicts: 3.5 times the time).
    float values[kChunk];
    uint8_t codes[kChunk + 1];
    for (int64_t c0 = lo; c0 < hi; c0 += kChunk) {
      const int len = int(std::min<int64_t>(kChunk, hi - c0));
      for (int j = 0; j < len; ++j) values[j] = E::load(a, c0 + j);  // (float16's has branches)
      for (int j = 0; j < len; ++j) codes[j] = code_in_block<Q>(values[j], scale, marked);
      codes[len] = code_in_block<Q>(0.f, scale, marked);  // odd n: the last byte pads with 0.0
      for (int j = 0; j < len; j += 2) out[(c0 + j) / 2] = pack_4bit(codes[j], codes[j + 1]);
    }
  }
}

}  // namespace

void quantize_4bit(DType dtype, const void* A, QuantType4bit quant_type, uint8_t* out, float* absmax, int64_t n,
                   int64_t blocksize) {
  dispatch_dtype(dtype, [&](auto tag) {
    constexpr DType T = decltype(tag)::value;
    if (quant_type == QuantType4bit::NF4) {
      quantize_blocks<T, QuantType4bit::NF4>(A, out, absmax, n, blocksize);
    } else {
      quantize_blocks<T, QuantType4bit::FP4>(A, out, absmax, n, blocksize);
    }
  });
}

// out[i] = code[q(i)] * absmax[block], rounded once to the dtype, as dequantize_blocks makes
// it, from the block's 16 possible values (block_values_4bit): a byte is two lookups.
void dequantize_4bit(DType dtype, const uint8_t* A, const float* code, const BlockScales& scales, void* out, int64_t n,
                     int64_t blocksize) {
  for_each_block_of(dtype, out, n, blocksize, [&](auto e, auto* o, int64_t b, int64_t lo, int64_t hi) {
    typename decltype(e)::storage value[16];
    block_values_4bit<decltype(e)>(code, block_scale(scales, b), value);
    int64_t i = lo;  // even: blocks hold whole bytes
    for (; i + 1 < hi; i += 2) {
      const uint8_t byte = A[i / 2];
      o[i] = value[byte >> 4];
      o[i + 1] = value[byte & 0xF];
    }
    if (i < hi) o[i] = value[A[i / 2] >> 4];
  });
}

}  // namespace bnb::cpu
