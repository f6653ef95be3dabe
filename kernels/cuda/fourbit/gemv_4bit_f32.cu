// The fused 4-bit matrix-vector product for float activations.
#include "gemv_4bit.cuh"

namespace bnb::cuda {
BNB_INSTANTIATE_GEMV_4BIT(float)
}  // namespace bnb::cuda
