// CUDA launcher for quantile estimation. All pointers are device pointers; the work is
// queued on `stream` (a memset and four kernels) and nothing synchronises with the host.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>
#include "bnb/dtype.h"

namespace bnb::cuda {

// Bytes of device scratch memory one call needs (histograms and the located bins).
size_t estimate_quantiles_workspace_bytes();

// As bnb::cpu::estimate_quantiles; `workspace` holds estimate_quantiles_workspace_bytes()
// bytes, 16-byte aligned, and may not be shared with a concurrent call.
cudaError_t estimate_quantiles(DType dtype, const void* A, int64_t n, double offset, int num_quantiles,
                               float* out, void* workspace, cudaStream_t stream);

}  // namespace bnb::cuda
