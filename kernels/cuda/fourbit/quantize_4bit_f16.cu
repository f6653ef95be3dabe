// Block-wise 4-bit quantize/dequantize kernels for __half values, every block size and format.
#include "quantize_4bit.cuh"

namespace bnb::cuda {
BNB_INSTANTIATE_4BIT(__half)
}  // namespace bnb::cuda
