// The fused 4-bit matrix-vector product for __half activations.
#include "gemv_4bit.cuh"

namespace bnb::cuda {
BNB_INSTANTIATE_GEMV_4BIT(__half)
}  // namespace bnb::cuda
