// The two counting passes of quantile estimation for bfloat16 input.
#include "quantiles.cuh"

namespace bnb::cuda {
BNB_INSTANTIATE_QUANTILE_PASS(__nv_bfloat16)
}  // namespace bnb::cuda
