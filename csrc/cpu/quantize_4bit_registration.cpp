// CPU kernels of the 4-bit ops: the op layer over the CPU backend.
#include <torch/library.h>

#include "../ops/linear_4bit_ops.h"
#include "backend.h"

TORCH_LIBRARY_IMPL(bitsandbytes, CPU, m) { BNB_REGISTER_4BIT_OPS(m, bnb::ops::CpuBackend) }
