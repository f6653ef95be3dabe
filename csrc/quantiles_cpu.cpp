// CPU registration of the quantile-estimation op.
#include <torch/library.h>

#include "bnb/quantiles_cpu.h"
#include "quantiles_ops.h"

namespace {

struct CpuQuantileBackend {
  static void estimate_quantiles(const at::Tensor&, bnb::DType dt, const void* A, int64_t n, double offset,
                                 int num_quantiles, float* out) {
    bnb::cpu::estimate_quantiles(dt, A, n, offset, num_quantiles, out);
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(bitsandbytes, CPU, m) { BNB_REGISTER_QUANTILE_OPS(m, CpuQuantileBackend) }
