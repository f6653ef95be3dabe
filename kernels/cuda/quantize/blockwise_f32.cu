// Block-wise quantize/dequantize kernels for float values, every block size.
#include "blockwise.cuh"

namespace bnb::cuda {
BNB_INSTANTIATE_BLOCKWISE(float)
}  // namespace bnb::cuda
