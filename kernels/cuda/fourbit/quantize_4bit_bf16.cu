// Block-wise 4-bit quantize/dequantize kernels for __nv_bfloat16 values, every block size and format.
#include "quantize_4bit.cuh"

namespace bnb::cuda {
BNB_INSTANTIATE_4BIT(__nv_bfloat16)
}  // namespace bnb::cuda
