// The two counting passes of quantile estimation for half input.
#include "quantiles.cuh"

namespace bnb::cuda {
BNB_INSTANTIATE_QUANTILE_PASS(__half)
}  // namespace bnb::cuda
