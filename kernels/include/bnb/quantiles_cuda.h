// CUDA launcher for quantile estimation. All pointers are device pointers; the work is
// queued on `stream` (four kernels) and nothing synchronises with the host.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>
#include "bnb/dtype.h"

namespace bnb::cuda {

// Bytes of device scratch memory a call on n values of `dtype` needs on the current device
// (the histograms of both passes, one row per cluster of CTAs, and the located bins); 0 if
// the device cannot be queried.
size_t estimate_quantiles_workspace_bytes(DType dtype, int64_t n);

// As bnb::cpu::estimate_quantiles (same arguments, then the scratch and the stream);
// `workspace` holds `workspace_bytes` bytes (at least estimate_quantiles_workspace_bytes(dtype,
// n), else cudaErrorInvalidValue), 256-byte aligned, and may not be shared with a concurrent
// call. It need not be zeroed.
cudaError_t estimate_quantiles(DType dtype, const void* A, int64_t n, double offset, int num_quantiles,
                               float* out, void* workspace, size_t workspace_bytes, cudaStream_t stream);

}  // namespace bnb::cuda
