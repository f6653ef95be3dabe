// The CUDA backend of the op layer (ops/*_ops.h): the launchers of bnb/*_cuda.h under the
// names the ops call, and what every CUDA op needs around a launch. The launchers take the
// arguments of their CPU twins (cpu/backend.h) in the same order, plus the stream; those whose
// kernels need device scratch are called through scratch_launchers.h, which takes it from
// torch's caching allocator.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <utility>

#include "../ops/checks.h"
#include "bnb/int8_cuda.h"
#include "bnb/quantize_4bit_cuda.h"
#include "bnb/quantize_cuda.h"
#include "scratch_launchers.h"

namespace bnb::ops {

struct CudaBackend {
  // The tensor's device made current, its current stream (never a fixed one) passed as the
  // launcher's last argument, and a launch failure turned into a Python error.
  template <class Launcher, class... Args>
  static void launch(const at::Tensor& like, Launcher launcher, Args&&... args) {
    const c10::cuda::CUDAGuard guard(like.device());
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream(like.get_device()).stream();
    const cudaError_t err = launcher(std::forward<Args>(args)..., stream);
    BNB_CHECK(err == cudaSuccess, "CUDA kernel launch failed: ", cudaGetErrorString(err));
  }

  static constexpr auto quantize_blockwise = &cuda::quantize_blockwise;
  static constexpr auto dequantize_blockwise = &cuda::dequantize_blockwise;
  static constexpr auto absmax = &cuda::absmax;
  static constexpr auto quantize_scaled = &cuda::quantize_scaled;
  static constexpr auto dequantize_scaled = &cuda::dequantize_scaled;

  static constexpr auto quantize_4bit = &cuda::quantize_4bit;
  static constexpr auto dequantize_4bit = &cuda::dequantize_4bit;
  // Rows of A up to which linear_4bit takes the fused kernel (ops/linear_4bit_ops.h).
  static constexpr int64_t kFused4bitMaxRows = cuda::kGemm4bitMaxRows;
  static constexpr auto gemv_4bit = &cuda::gemv_4bit;

  static constexpr auto estimate_quantiles = &with_scratch::estimate_quantiles;

  static constexpr auto int8_vectorwise_quant = &with_scratch::int8_vectorwise_quant;
  static constexpr auto int8_colwise_quant = &cuda::int8_colwise_quant;
  static constexpr auto int8_vectorwise_dequant = &cuda::int8_vectorwise_dequant;
  static constexpr auto int8_linear_matmul = &with_scratch::int8_linear_matmul;
  static constexpr auto int8_mm_dequant = &cuda::int8_mm_dequant;
  static constexpr auto int8_mm_dequant_outliers = &with_scratch::int8_mm_dequant_outliers;
  static constexpr auto int8_weight_linear = &with_scratch::int8_weight_linear;
};

}  // namespace bnb::ops
