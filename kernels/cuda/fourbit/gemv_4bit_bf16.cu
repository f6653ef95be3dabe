// The fused 4-bit matrix-vector product for __nv_bfloat16 activations.
#include "gemv_4bit.cuh"

namespace bnb::cuda {
BNB_INSTANTIATE_GEMV_4BIT(__nv_bfloat16)
}  // namespace bnb::cuda
