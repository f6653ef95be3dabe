// The CPU backend of the op layer (ops/*_ops.h): the launchers of bnb/*_cpu.h under the names
// the ops call, and how one runs. cuda/backend.h names the CUDA launchers alike and they take
// the same arguments in the same order (plus the stream), so an op is written once as
// Backend::launch(like, Backend::<launcher>, args...).
#pragma once
#include <ATen/core/Tensor.h>

#include <utility>

#include "bnb/int8_cpu.h"
#include "bnb/quantiles_cpu.h"
#include "bnb/quantize_4bit_cpu.h"
#include "bnb/quantize_cpu.h"

namespace bnb::ops {

struct CpuBackend {
  // Host launchers need no device, stream or status: the call is the work.
  template <class Launcher, class... Args>
  static void launch(const at::Tensor& /*like*/, Launcher launcher, Args&&... args) {
    launcher(std::forward<Args>(args)...);
  }

  static constexpr auto quantize_blockwise = &cpu::quantize_blockwise;
  static constexpr auto dequantize_blockwise = &cpu::dequantize_blockwise;
  static constexpr auto absmax = &cpu::absmax;
  static constexpr auto quantize_scaled = &cpu::quantize_scaled;
  static constexpr auto dequantize_scaled = &cpu::dequantize_scaled;

  static constexpr auto quantize_4bit = &cpu::quantize_4bit;
  static constexpr auto dequantize_4bit = &cpu::dequantize_4bit;
  // Rows of A up to which linear_4bit takes the fused kernel (ops/linear_4bit_ops.h).
  static constexpr int64_t kFused4bitMaxRows = 16;
  static constexpr auto gemv_4bit = &cpu::gemv_4bit;

  static constexpr auto estimate_quantiles = &cpu::estimate_quantiles;

  static constexpr auto int8_vectorwise_quant = &cpu::int8_vectorwise_quant;
  static constexpr auto int8_colwise_quant = &cpu::int8_colwise_quant;
  static constexpr auto int8_vectorwise_dequant = &cpu::int8_vectorwise_dequant;
  static constexpr auto int8_linear_matmul = &cpu::int8_linear_matmul;
  static constexpr auto int8_mm_dequant = &cpu::int8_mm_dequant;
  static constexpr auto int8_mm_dequant_outliers = &cpu::int8_mm_dequant_outliers;
  static constexpr auto int8_weight_linear = &cpu::int8_weight_linear;
};

}  // namespace bnb::ops
