// Optimizer update kernels for float parameters: every algorithm, 8-bit and 32-bit state.
#include "optimizer.cuh"

namespace bnb::cuda {
BNB_INSTANTIATE_OPTIMIZER(float)
}  // namespace bnb::cuda
