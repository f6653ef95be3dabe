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
    launch_on(like, [&](cudaStream_t s) {
      // Sized on the tensor's device (launch_on makes it current): the rows of the passes'
      // histograms depend on how many CTAs the device runs at once. Freed at the end of the
      // call: the caching allocator hands it out again only to work queued after ours.
      const size_t bytes = bnb::cuda::estimate_quantiles_workspace_bytes(dt, n);
      const at::Tensor workspace = at::empty({int64_t(bytes)}, like.options().dtype(at::kByte));
      return bnb::cuda::estimate_quantiles(dt, A, n, offset, num_quantiles, out, workspace.data_ptr(), bytes, s);
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(bitsandbytes, CUDA, m) { BNB_REGISTER_QUANTILE_OPS(m, CudaQuantileBackend) }
