// The two counting passes of quantile estimation for float input.
#include "quantiles.cuh"

namespace bnb::cuda {
BNB_INSTANTIATE_QUANTILE_PASS(float)
}  // namespace bnb::cuda
