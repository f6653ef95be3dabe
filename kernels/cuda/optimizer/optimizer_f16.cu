// Optimizer update kernels for __half parameters: every algorithm, 8-bit and 32-bit state.
#include "optimizer.cuh"

namespace bnb::cuda {
BNB_INSTANTIATE_OPTIMIZER(__half)
}  // namespace bnb::cuda
