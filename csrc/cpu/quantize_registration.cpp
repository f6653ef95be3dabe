// CPU kernels of the quantization ops: the op layer over the CPU backend.
#include <torch/library.h>

#include "../ops/quantize_ops.h"
#include "backend.h"

TORCH_LIBRARY_IMPL(bitsandbytes, CPU, m) { BNB_REGISTER_QUANTIZE_OPS(m, bnb::ops::CpuBackend) }
