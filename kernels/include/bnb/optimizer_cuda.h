// CUDA launchers of the multi-tensor optimizer update. All pointers are device pointers;
// work is queued on `stream` and nothing synchronises with the host.
#pragma once
#include <cstdint>
#include <cuda_runtime_api.h>

#include "bnb/dtype.h"
#include "bnb/optimizer.h"

namespace bnb::cuda {

// Updates every tensor of `table` (a device copy of what fill_optimizer_table wrote, for
// `count` tensors and `total_chunks` chunks) in place. format: float32 states, or 8-bit / 4-bit
// codes with maps code1/code2 (StateFormat; 4-bit: Adam, block-wise, no trust ratio).
// workspace: count * kStats floats (the slots' stats point into it), zeroed here where a
// pre-pass needs it.
cudaError_t optimizer_update(DType dtype, StateFormat format, const OptimizerHyper& h, const void* table, int count,
                             int64_t total_chunks, const float* code1, const float* code2, float* workspace,
                             cudaStream_t stream);

// Unified (managed) memory for paged optimizer state, and its asynchronous migration on
// `stream` to GPU `device`, or to host memory for kHostMemory (a no-op for memory that is not
// managed). paged_alloc_zeroed also queues the zeroing of the new memory on `stream`.
constexpr int kHostMemory = -1;
cudaError_t paged_alloc_zeroed(size_t bytes, void** out, cudaStream_t stream);
cudaError_t paged_free(void* ptr);
cudaError_t prefetch_managed(const void* ptr, size_t bytes, int device, cudaStream_t stream);

}  // namespace bnb::cuda
