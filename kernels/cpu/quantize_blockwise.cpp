// Block-wise 8-bit quantization on the CPU: one absmax per block, blocks spread over threads.
#include <algorithm>
#include <cmath>

#include "bnb/nonfinite.h"
#include "bnb/quantize_cpu.h"
#include "block_absmax.h"
#include "blockwise_dequantize.h"
#include "element_io.h"
#include "nearest_code.h"

namespace bnb::cpu {

void quantize_blockwise(DType dtype, const void* A, const float* code, uint8_t* out, float* absmax,
                        int64_t n, int64_t blocksize) {
  const Midpoints<> mids(code);
  const int64_t blocks = num_blocks(n, blocksize);
  dispatch_dtype(dtype, [&](auto tag) {
    using E = Element<decltype(tag)::value>;
    const auto* a = static_cast<const typename E::storage*>(A);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t lo = b * blocksize, hi = std::min(n, lo + blocksize);
      float amax;
      bool marked;
      absmax[b] = stored_block_absmax<E>(a, lo, hi, amax, marked);
      const BlockScale scale = block_scale(amax, true);
      for (int64_t i = lo; i < hi; ++i) {
        const float x = E::load(a, i);
        out[i] = marked_code_8bit(mids.nearest(scale.apply(x)), x, marked);
      }
    }
  });
}

void dequantize_blockwise(DType dtype, const uint8_t* A, const float* code, const float* absmax,
                          void* out, int64_t n, int64_t blocksize) {
  dequantize_blocks(dtype, absmax, out, n, blocksize, kReservedCode8bit, [&](int64_t i) { return A[i]; }, code);
}

}  // namespace bnb::cpu
