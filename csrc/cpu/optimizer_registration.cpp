// CPU kernels of the optimizer update and of the paged-state ops. The update's slots go
// straight to the kernel (no table), their statistics in scratch of this call.
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <vector>

#include "bnb/optimizer_cpu.h"
#include "../ops/optimizer_ops.h"

namespace {

struct CpuOptimizerUpdate {
  static void update(const at::Tensor&, bnb::DType dt, const bnb::OptimizerHyper& h, bnb::StateFormat format,
                     std::vector<bnb::TensorSlot>& slots, const float* code1, const float* code2) {
    // doubles, so that the squared norms kept in the statistics are 8-byte aligned
    std::vector<double> stats((slots.size() * bnb::kStats + 1) / 2);
    for (size_t i = 0; i < slots.size(); ++i) slots[i].stats = reinterpret_cast<float*>(stats.data()) + i * bnb::kStats;
    const int64_t count = int64_t(slots.size());
    switch (format) {
      case bnb::StateFormat::Float32: bnb::cpu::optimizer_update_32bit(dt, h, slots.data(), count); return;
      case bnb::StateFormat::Code8: bnb::cpu::optimizer_update_8bit(dt, h, slots.data(), count, code1, code2); return;
      case bnb::StateFormat::Code4: bnb::cpu::optimizer_update_4bit(dt, h, slots.data(), count, code1, code2); return;
    }
  }
};

// Host memory has no paging to manage: ordinary zeros, and nothing to prefetch.
at::Tensor paged_zeros_cpu(const at::Tensor& like, at::IntArrayRef size, c10::ScalarType dtype) {
  return at::zeros(size, like.options().dtype(dtype));
}

void prefetch_cpu(at::TensorList) {}

}  // namespace

TORCH_LIBRARY_IMPL(bitsandbytes, CPU, m) {
  m.impl("optimizer_update", &bnb::ops::optimizer_update<CpuOptimizerUpdate>);
  m.impl("paged_zeros", &paged_zeros_cpu);
  m.impl("prefetch_to_device", &prefetch_cpu);
  m.impl("prefetch_to_host", &prefetch_cpu);
}
