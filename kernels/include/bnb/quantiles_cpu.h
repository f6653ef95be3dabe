// CPU launcher for quantile estimation (OpenMP, 64-bit indexing). See bnb/quantiles.h for
// the method.
#pragma once
#include <cstdint>
#include "bnb/dtype.h"

namespace bnb::cpu {

// Writes to out[0..num_quantiles) the estimated quantiles of the n contiguous values of A at
// the equidistant probabilities offset + j * (1 - 2 offset) / (num_quantiles - 1).
// Requires n >= 1 and 1 <= num_quantiles <= 256.
void estimate_quantiles(DType dtype, const void* A, int64_t n, double offset, int num_quantiles, float* out);

}  // namespace bnb::cpu
