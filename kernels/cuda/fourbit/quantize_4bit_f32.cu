// Block-wise 4-bit quantize/dequantize kernels for float values, every block size and format.
#include "quantize_4bit.cuh"

namespace bnb::cuda {
BNB_INSTANTIATE_4BIT(float)
}  // namespace bnb::cuda
