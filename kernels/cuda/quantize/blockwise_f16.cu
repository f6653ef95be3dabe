// Block-wise quantize/dequantize kernels for __half values, every block size.
#include "blockwise.cuh"

namespace bnb::cuda {
BNB_INSTANTIATE_BLOCKWISE(__half)
}  // namespace bnb::cuda
