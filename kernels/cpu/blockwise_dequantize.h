// The dequantize loop every block-wise format shares (CPU): out[i] = code[q(i)] * absmax[i /
// blocksize], rounded once to dtype, blocks spread over the OpenMP threads; in a block marked
// as holding non-finite values the reserved code gives NaN (bnb/nonfinite.h). A format
// supplies q(i), the code of element i.
#pragma once
#include <algorithm>
#include <cstdint>

#include "bnb/nonfinite.h"
#include "element_io.h"

namespace bnb::cpu {

template <class Code>
void dequantize_blocks(DType dtype, const float* absmax, void* out, int64_t n, int64_t blocksize, uint8_t reserved,
                       Code q, const float* code) {
  const int64_t blocks = num_blocks(n, blocksize);
  dispatch_dtype(dtype, [&](auto tag) {
    using E = Element<decltype(tag)::value>;
    auto* o = static_cast<typename E::storage*>(out);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t lo = b * blocksize, hi = std::min(n, lo + blocksize);
      const float stored = absmax[b];
      for (int64_t i = lo; i < hi; ++i) {
        const uint8_t c = q(i);
        E::store(o, i, dequantized_value(code[c], c, reserved, stored));
      }
    }
  });
}

}  // namespace bnb::cpu
