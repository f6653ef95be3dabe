// Optimizer update kernels for __nv_bfloat16 parameters: every algorithm, 8-bit and 32-bit state.
#include "optimizer.cuh"

namespace bnb::cuda {
BNB_INSTANTIATE_OPTIMIZER(__nv_bfloat16)
}  // namespace bnb::cuda
