// The dequantize loop every block-wise format shares (CPU): out[i] = code[q(i)] * absmax[i /
// blocksize], rounded once to dtype, blocks spread over the OpenMP threads; in a block marked
// as holding non-finite values the reserved code gives NaN (bnb/nonfinite.h). A format
// supplies q(i), the code of element i; 4-bit codes take a block's 16 values once instead.
#pragma once
#include <algorithm>
#include <cstdint>

#include "bnb/nonfinite.h"
#include "element_io.h"

namespace bnb::cpu {

// body(E{}, o, b, lo, hi) for every block b of n elements ([lo, hi)) with E the dtype's Element
// and o the output as its storage, blocks spread over the OpenMP threads.
template <class Body> void for_each_block_of(DType dtype, void* out, int64_t n, int64_t blocksize, Body body) {
  const int64_t blocks = num_blocks(n, blocksize);
  dispatch_dtype(dtype, [&](auto tag) {
    using E = Element<decltype(tag)::value>;
    auto* o = static_cast<typename E::storage*>(out);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) body(E{}, o, b, b * blocksize, std::min(n, (b + 1) * blocksize));
  });
}

template <class Code>
void dequantize_blocks(DType dtype, const float* absmax, void* out, int64_t n, int64_t blocksize, uint8_t reserved,
                       Code q, const float* code) {
  for_each_block_of(dtype, out, n, blocksize, [&](auto e, auto* o, int64_t b, int64_t lo, int64_t hi) {
    using E = decltype(e);
    const float stored = absmax[b];
    for (int64_t i = lo; i < hi; ++i) {
      const uint8_t c = q(i);
      E::store(o, i, dequantized_value(code[c], c, reserved, stored));
    }
  });
}

// The 16 values a 4-bit code takes in a block whose stored absmax (or nested scale) is `stored`,
// each rounded to the dtype as dequantize writes it: a 4-bit block's dequantize is then a lookup
// a code.
template <class E> void block_values_4bit(const float* code, float stored, typename E::storage (&v)[16]) {
  for (int q = 0; q < 16; ++q) E::store(v, q, dequantized_value(code[q], uint8_t(q), kReservedCode4bit, stored));
}

}  // namespace bnb::cpu
