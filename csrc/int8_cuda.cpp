// CUDA registration of the LLM.int8() ops. Scratch space (outlier column list, cuBLASLt
// workspace) comes from torch's caching allocator on the op's device and stream.
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "bnb/int8_cuda.h"
#include "cuda_context.h"
#include "int8_ops.h"

namespace {

using bnb::ops::launch_on;

// cuBLASLt picks among more kernels with room for split-K partial sums.
constexpr int64_t kGemmWorkspaceBytes = 32 << 20;

struct CudaInt8Backend {
  static void vectorwise_quant(const at::Tensor& like, bnb::DType dt, const void* A, int64_t rows, int64_t cols,
                               float threshold, int8_t* out, float* stats, bool* outliers) {
    at::Tensor scratch;
    if (threshold > 0.f)
      scratch = at::empty({bnb::cuda::int8_outlier_scratch_size(cols)}, like.options().dtype(at::kInt));
    int32_t* s = scratch.defined() ? scratch.mutable_data_ptr<int32_t>() : nullptr;
    launch_on(like, [&](cudaStream_t st) {
      return bnb::cuda::int8_vectorwise_quant(dt, A, rows, cols, threshold, out, stats, outliers, s, st);
    });
  }
  static void vectorwise_quant_list(const at::Tensor& like, bnb::DType dt, const void* A, int64_t rows, int64_t cols,
                                    float threshold, int8_t* out, float* stats, bool* flags, int32_t* list) {
    launch_on(like, [&](cudaStream_t st) {
      return bnb::cuda::int8_vectorwise_quant(dt, A, rows, cols, threshold, out, stats, flags, list, st);
    });
  }
  static void mm_dequant_outliers(const at::Tensor& like, bnb::DType dt, const int32_t* C, const float* rs,
                                  const float* cs, const void* bias, const void* X, const void* W, bool w_int8,
                                  const int32_t* list, int64_t M, int64_t N, int64_t K, void* out) {
    // `like` is X: the gathered weight columns take its dtype.
    at::Tensor sub_BT = at::empty({bnb::cuda::int8_outlier_fused_cols(K), N}, like.options());
    void* sbt = sub_BT.mutable_data_ptr();
    launch_on(like, [&](cudaStream_t st) {
      return bnb::cuda::int8_mm_dequant_outliers(dt, C, rs, cs, bias, X, W, w_int8, list, sbt, M, N, K, out, st);
    });
  }
  static void colwise_quant(const at::Tensor& like, bnb::DType dt, const void* A, int64_t rows, int64_t cols,
                            float threshold, const bool* outliers, int8_t* out, float* stats) {
    launch_on(like, [&](cudaStream_t st) {
      return bnb::cuda::int8_colwise_quant(dt, A, rows, cols, threshold, outliers, out, stats, st);
    });
  }
  static void vectorwise_dequant(const at::Tensor& like, const int8_t* A, const float* stats, int64_t rows,
                                 int64_t cols, float* out) {
    launch_on(like, [&](cudaStream_t st) { return bnb::cuda::int8_vectorwise_dequant(A, stats, rows, cols, out, st); });
  }
  static void linear_matmul(const at::Tensor& like, const int8_t* A, const int8_t* B, int32_t* C, int64_t M, int64_t N,
                            int64_t K) {
    at::Tensor workspace = at::empty({kGemmWorkspaceBytes}, like.options().dtype(at::kByte));
    void* ws = workspace.mutable_data_ptr();
    launch_on(like, [&](cudaStream_t st) {
      return bnb::cuda::int8_linear_matmul(A, B, C, M, N, K, ws, size_t(kGemmWorkspaceBytes), st);
    });
  }
  static void mm_dequant(const at::Tensor& like, bnb::DType dt, const int32_t* C, const float* rs, const float* cs,
                         const void* bias, const void* sub_A, const void* sub_B, int64_t sub_k, int64_t M, int64_t N,
                         void* out) {
    launch_on(like, [&](cudaStream_t st) {
      return bnb::cuda::int8_mm_dequant(dt, C, rs, cs, bias, sub_A, sub_B, sub_k, M, N, out, st);
    });
  }
  static void weight_linear(const at::Tensor& like, bnb::DType dt, const void* A, const int8_t* CB, const float* SCB,
                            const void* bias, int64_t M, int64_t N, int64_t K, void* out) {
    launch_on(like, [&](cudaStream_t st) {
      // Asked with the tensor's device current: the kernel choice depends on the device. The
      // default (cluster) kernel needs none.
      at::Tensor workspace;
      const int64_t floats = bnb::cuda::int8_weight_linear_workspace_floats(dt, M, N, K);
      if (floats > 0) workspace = at::empty({floats}, like.options().dtype(at::kFloat));
      float* ws = workspace.defined() ? workspace.mutable_data_ptr<float>() : nullptr;
      return bnb::cuda::int8_weight_linear(dt, A, CB, SCB, bias, M, N, K, out, ws, st);
    });
  }
};

}  // namespace

TORCH_LIBRARY_IMPL(bitsandbytes, CUDA, m) { BNB_REGISTER_INT8_OPS(m, CudaInt8Backend) }
