// CUDA kernels of the 4-bit ops: the op layer over the CUDA backend.
#include <torch/library.h>

#include "../ops/linear_4bit_ops.h"
#include "backend.h"

TORCH_LIBRARY_IMPL(bitsandbytes, CUDA, m) { BNB_REGISTER_4BIT_OPS(m, bnb::ops::CudaBackend) }
