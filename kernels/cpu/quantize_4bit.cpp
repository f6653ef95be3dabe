// Block-wise 4-bit quantization and dequantization on the CPU. Threads take whole blocks;
// every block size is even, so a byte never straddles two blocks or two threads.
#include <algorithm>
#include <cmath>

#include "bnb/nonfinite.h"
#include "bnb/quantize_4bit_cpu.h"
#include "block_absmax.h"
#include "element_io.h"

namespace bnb::cpu {

namespace {

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
    for (int64_t i = lo; i < hi; i += 2) {
      const float second = i + 1 < hi ? E::load(a, i + 1) : 0.f;  // odd n: pad with 0.0
      out[i / 2] = pack_4bit(code_4bit_in_block<Q>(E::load(a, i), scale, marked),
                             code_4bit_in_block<Q>(second, scale, marked));
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

// out[i] = code[q(i)] * absmax[block], rounded once to the dtype, as the 8-bit loop
// (blockwise_dequantize.h) makes it, but with a block's 16 possible outputs made once: a byte is
// then two lookups.
void dequantize_4bit(DType dtype, const uint8_t* A, const float* code, const float* absmax, void* out, int64_t n,
                     int64_t blocksize) {
  const int64_t blocks = num_blocks(n, blocksize);
  dispatch_dtype(dtype, [&](auto tag) {
    using E = Element<decltype(tag)::value>;
    auto* o = static_cast<typename E::storage*>(out);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t lo = b * blocksize, hi = std::min(n, lo + blocksize);  // lo even: whole bytes
      typename E::storage value[16];
      for (int q = 0; q < 16; ++q)
        E::store(value, q, dequantized_value(code[q], uint8_t(q), kReservedCode4bit, absmax[b]));
      int64_t i = lo;
      for (; i + 1 < hi; i += 2) {
        const uint8_t byte = A[i / 2];
        o[i] = value[byte >> 4];
        o[i + 1] = value[byte & 0xF];
      }
      if (i < hi) o[i] = value[A[i / 2] >> 4];
    }
  });
}

}  // namespace bnb::cpu
