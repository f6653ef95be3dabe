// Block-wise quantize/dequantize kernels for __nv_bfloat16 values, every block size.
#include "blockwise.cuh"

namespace bnb::cuda {
BNB_INSTANTIATE_BLOCKWISE(__nv_bfloat16)
}  // namespace bnb::cuda
