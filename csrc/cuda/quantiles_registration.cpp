// CUDA kernel of the quantile-estimation op: the op layer over the CUDA backend.
#include <torch/library.h>

#include "../ops/quantiles_ops.h"
#include "backend.h"

TORCH_LIBRARY_IMPL(bitsandbytes, CUDA, m) { BNB_REGISTER_QUANTILE_OPS(m, bnb::ops::CudaBackend) }
