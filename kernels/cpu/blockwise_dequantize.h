// The dequantize loop every block-wise format shares (CPU): out[i] = value(i) * absmax[i /
// blocksize], rounded once to dtype, blocks spread over the OpenMP threads. A format supplies
// value(i), the code table's value of element i.
#pragma once
#include <algorithm>
#include <cstdint>

#include "element_io.h"

namespace bnb::cpu {

template <class Value>
void dequantize_blocks(DType dtype, const float* absmax, void* out, int64_t n, int64_t blocksize, Value value) {
  const int64_t blocks = num_blocks(n, blocksize);
  dispatch_dtype(dtype, [&](auto tag) {
    using E = Element<decltype(tag)::value>;
    auto* o = static_cast<typename E::storage*>(out);
#pragma omp parallel for schedule(static)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t lo = b * blocksize, hi = std::min(n, lo + blocksize);
      const float amax = absmax[b];
      for (int64_t i = lo; i < hi; ++i) E::store(o, i, value(i) * amax);
    }
  });
}

}  // namespace bnb::cpu
