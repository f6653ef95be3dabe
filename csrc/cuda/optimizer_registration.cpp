// CUDA kernels of the optimizer update and of the paged-state ops, and the memory figures that
// decide when paged state is migrated. The device table of
// tensor slots belongs to the launch the op layer keeps for these tensors (optimizer_launch.h);
// it is uploaded again (an asynchronous copy from pinned memory on the current stream) only
// when its contents change.
#include <ATen/ops/empty.h>
#include <ATen/ops/from_blob.h>
#include <c10/cuda/CUDACachingAllocator.h>
#include <c10/util/accumulate.h>
#include <cstring>
#include <vector>
#include <torch/library.h>

#include "bnb/optimizer_cuda.h"
#include "../ops/optimizer_launch.h"
#include "../ops/optimizer_ops.h"
#include "backend.h"

namespace {

using bnb::ops::CudaBackend;

struct CudaOptimizerUpdate {
  static void update(const at::Tensor& like, bnb::DType dt, const bnb::OptimizerHyper& h, bnb::StateFormat format,
                     std::vector<bnb::TensorSlot>& slots, const float* code1, const float* code2) {
    const auto launch = bnb::ops::optimizer_launch_for(like.device(), slots);
    float* stats = launch->workspace.mutable_data_ptr<float>();
    for (size_t i = 0; i < slots.size(); ++i) slots[i].stats = stats + i * bnb::kStats;
    const int64_t count = int64_t(slots.size());
    const int64_t bytes = int64_t(bnb::optimizer_table_bytes(count));
    std::vector<uint8_t> fresh(bytes);
    const int64_t total_chunks = bnb::fill_optimizer_table(slots.data(), count, fresh.data());
    // The kernels index 256-value chunks in 32 bits (addresses by one multiply-add).
    BNB_CHECK_VALUE(total_chunks < (int64_t(1) << 32),
                    "optimizer_update: params on CUDA hold at most 2^40 values a launch, got ", total_chunks, " chunks of ",
                    bnb::kOptimizerBlock);
    const c10::cuda::CUDAGuard guard(like.device());
    if (!launch->table.defined() || launch->mirror != fresh) {
      // A new device buffer rather than an overwrite: a step queued on another stream may still
      // read the old one (the caching allocator hands it out again only after that stream's work).
      at::Tensor staging = at::empty({bytes}, at::TensorOptions().dtype(at::kByte).pinned_memory(true));
      std::memcpy(staging.mutable_data_ptr(), fresh.data(), bytes);
      launch->table = at::empty({bytes}, at::TensorOptions().dtype(at::kByte).device(like.device()));
      launch->table.copy_(staging, /*non_blocking=*/true);  // current stream; staging lives until it is done
      launch->mirror = std::move(fresh);
    }
    CudaBackend::launch(like, bnb::cuda::optimizer_update, dt, format, h, launch->table.const_data_ptr(),
                        int(count), total_chunks, code1, code2, stats);
  }
};

at::Tensor paged_zeros_cuda(const at::Tensor& like, at::IntArrayRef size, c10::ScalarType dtype) {
  for (auto d : size) BNB_CHECK(d >= 0, "paged_zeros: size must not be negative, got ", size);
  const int64_t numel = c10::multiply_integers(size);
  const size_t bytes = size_t(numel) * c10::elementSize(dtype);
  void* ptr = nullptr;
  CudaBackend::launch(like, bnb::cuda::paged_alloc_zeroed, bytes, &ptr);
  return at::from_blob(
      ptr, size, [](void* p) { bnb::cuda::paged_free(p); }, at::TensorOptions().dtype(dtype).device(like.device()));
}

// Each tensor's bytes to `device` (its own GPU, or bnb::cuda::kHostMemory).
void prefetch_managed(at::TensorList tensors, bool to_host, const char* op) {
  for (const at::Tensor& t : tensors) {
    BNB_CHECK(t.is_contiguous(), op, ": tensors must be contiguous");
    const size_t bytes = size_t(t.numel()) * t.element_size();
    const int device = to_host ? bnb::cuda::kHostMemory : t.get_device();
    CudaBackend::launch(t, bnb::cuda::prefetch_managed, t.const_data_ptr(), bytes, device);
  }
}

void prefetch_to_device_cuda(at::TensorList tensors) { prefetch_managed(tensors, false, "prefetch_to_device"); }
void prefetch_to_host_cuda(at::TensorList tensors) { prefetch_managed(tensors, true, "prefetch_to_host"); }

// One driver call and one read of the allocator's counters: torch.cuda.mem_get_info and the
// allocator's statistics dictionary cost a paged step more host time than its kernel.
std::vector<int64_t> cuda_memory_numbers_cuda(const at::Tensor& on_device) {
  const c10::cuda::CUDAGuard guard(on_device.device());
  size_t free = 0, total = 0;
  const cudaError_t err = cudaMemGetInfo(&free, &total);
  if (err != cudaSuccess) cudaGetLastError();  // cleared, so that the next CUDA check does not report it again
  BNB_CHECK(err == cudaSuccess, "cuda_memory_numbers: cudaMemGetInfo failed on ", on_device.device(), ": ",
            cudaGetErrorString(err));
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(on_device.get_device());
  const auto& reserved = stats.reserved_bytes[static_cast<size_t>(c10::CachingAllocator::StatType::AGGREGATE)];
  return {int64_t(total), int64_t(free), reserved.current, reserved.peak};
}

}  // namespace

TORCH_LIBRARY_IMPL(bitsandbytes, CUDA, m) {
  m.impl("optimizer_update", &bnb::ops::optimizer_update<CudaOptimizerUpdate>);
  m.impl("paged_zeros", &paged_zeros_cuda);
  m.impl("prefetch_to_device", &prefetch_to_device_cuda);
  m.impl("prefetch_to_host", &prefetch_to_host_cuda);
  m.impl("cuda_memory_numbers", &cuda_memory_numbers_cuda);
}
