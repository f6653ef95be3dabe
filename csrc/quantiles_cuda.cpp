// CUDA registration of the quantile-estimation op. The scratch histograms come from torch's
// caching allocator, so a call costs no cudaMalloc and no host synchronisation.
#include <torch/library.h>

#include "bnb/quantiles_cuda.h"
#include "cuda_context.h"
#include "quantiles_ops.h"

namespace {

using bnb::ops::launch_on;

struct CudaQuantileBackend {
  static void estimate_quantiles(const at::Tensor& like, bnb::DType dt, const void* A, int64_t n, double offset,
                                 int num_quantiles, float* out) {
    const at::Tensor workspace = at::empty({int64_t(bnb::cuda::estimate_quantiles_workspace_bytes())},
                                           like.options().dtype(at::kByte));
    void* ws = workspace.data_ptr();
    launch_on(like, [&](cudaStream_t s) {
      return bnb::cuda::estimate_quantiles(dt, A, n, offset, num_quantiles, out, ws, s);
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(bitsandbytes, CUDA, m) { BNB_REGISTER_QUANTILE_OPS(m, CudaQuantileBackend) }
