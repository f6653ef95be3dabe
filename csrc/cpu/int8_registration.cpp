// CPU kernels of the LLM.int8() ops: the op layer over the CPU backend.
#include <torch/library.h>

#include "../ops/int8_ops.h"
#include "backend.h"

TORCH_LIBRARY_IMPL(bitsandbytes, CPU, m) { BNB_REGISTER_INT8_OPS(m, bnb::ops::CpuBackend) }
