// Quantization with one scale for the whole tensor (or none) on the CPU.
#include <algorithm>
#include <cmath>

#include "bnb/quantize_cpu.h"
#include "element_io.h"
#include "nearest_code.h"

namespace bnb::cpu {

void absmax(DType dtype, const void* A, int64_t n, float* absmax) {
  dispatch_dtype(dtype, [&](auto tag) {
    using E = Element<decltype(tag)::value>;
    const auto* a = static_cast<const typename E::storage*>(A);
    float amax = 0.f;
#pragma omp parallel for reduction(max : amax) schedule(static)
    for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(E::load(a, i)));
    *absmax = amax;
  });
}

void quantize_scaled(DType dtype, const void* A, const float* code, const float* scale, uint8_t* out,
                     int64_t n) {
  const Midpoints<> mids(code);
  const float s = scale ? *scale : 1.f;
  // A value divided by the scale (not multiplied by its reciprocal) and ties to the even code:
  // the codes of the reference library's tensor-wise quantization, bit for bit. A zero scale
  // (an all-zero tensor) gives the code nearest 0.
  const float d = s > 0.f ? s : INFINITY;
  dispatch_dtype(dtype, [&](auto tag) {
    using E = Element<decltype(tag)::value>;
    const auto* a = static_cast<const typename E::storage*>(A);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) out[i] = mids.nearest_even_tie(E::load(a, i) / d);
  });
}

void dequantize_scaled(DType dtype, const uint8_t* A, const float* code, const float* scale, void* out,
                       int64_t n) {
  const float s = scale ? *scale : 1.f;
  dispatch_dtype(dtype, [&](auto tag) {
    using E = Element<decltype(tag)::value>;
    auto* o = static_cast<typename E::storage*>(out);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) E::store(o, i, code[A[i]] * s);
  });
}

}  // namespace bnb::cpu
