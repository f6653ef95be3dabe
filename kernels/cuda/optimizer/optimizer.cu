// The dtype dispatch of the optimizer update (kernels instantiated per dtype in
// optimizer_{f32,f16,bf16}.cu), the tensor-wise absmax store, and the paged-memory helpers.
#include "optimizer.cuh"

namespace bnb::cuda {

extern template cudaError_t launch_optimizer_update<float>(const OptTable&, int, StateFormat, const OptimizerHyper&,
                                                           const float*, const float*, float*, cudaStream_t);
extern template cudaError_t launch_optimizer_update<__half>(const OptTable&, int, StateFormat, const OptimizerHyper&,
                                                            const float*, const float*, float*, cudaStream_t);
extern template cudaError_t launch_optimizer_update<__nv_bfloat16>(const OptTable&, int, StateFormat,
                                                                   const OptimizerHyper&, const float*, const float*,
                                                                   float*, cudaStream_t);

__global__ void optimizer_store_tensor_absmax_kernel(const TensorSlot* slots, int count, bool two) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= count) return;
  const TensorSlot s = slots[i];
  if (s.n == 0) return;
  s.absmax1[0] = s.stats[kNewMax1];
  if (two) s.absmax2[0] = s.stats[kNewMax2];
}

cudaError_t optimizer_update(DType dtype, StateFormat format, const OptimizerHyper& h, const void* table, int count,
                             int64_t total_chunks, const float* code1, const float* code2, float* workspace,
                             cudaStream_t stream) {
  if (count == 0 || total_chunks == 0) return cudaSuccess;
  const auto* slots = static_cast<const TensorSlot*>(table);
  const OptTable tab{slots, reinterpret_cast<const int64_t*>(slots + count), total_chunks};
  switch (dtype) {
    case DType::Float32:
      return launch_optimizer_update<float>(tab, count, format, h, code1, code2, workspace, stream);
    case DType::Float16:
      return launch_optimizer_update<__half>(tab, count, format, h, code1, code2, workspace, stream);
    case DType::BFloat16:
      return launch_optimizer_update<__nv_bfloat16>(tab, count, format, h, code1, code2, workspace, stream);
  }
  return cudaErrorInvalidValue;
}

cudaError_t paged_alloc_zeroed(size_t bytes, void** out, cudaStream_t stream) {
  const cudaError_t e = cudaMallocManaged(out, bytes == 0 ? 1 : bytes, cudaMemAttachGlobal);
  if (e != cudaSuccess) return e;
  return cudaMemsetAsync(*out, 0, bytes, stream);
}

cudaError_t paged_free(void* ptr) { return cudaFree(ptr); }

cudaError_t prefetch_managed(const void* ptr, size_t bytes, int device, cudaStream_t stream) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, ptr) != cudaSuccess) {
    cudaGetLastError();  // not a CUDA pointer: nothing to migrate
    return cudaSuccess;
  }
  if (attr.type != cudaMemoryTypeManaged || bytes == 0) return cudaSuccess;
#if CUDART_VERSION >= 13000
  cudaMemLocation location{};
  location.type = device == kHostMemory ? cudaMemLocationTypeHost : cudaMemLocationTypeDevice;
  location.id = device == kHostMemory ? 0 : device;
  return cudaMemPrefetchAsync(ptr, bytes, location, 0, stream);
#else
  return cudaMemPrefetchAsync(ptr, bytes, device == kHostMemory ? cudaCpuDeviceId : device, stream);
#endif
}

}  // namespace bnb::cuda
