// CPU launchers of the optimizer update (OpenMP, 64-bit indexing). Each call updates every
// tensor of `slots` in place: parameters, gradients and states are contiguous host memory
// and every parameter has `dtype`.
#pragma once
#include <cstdint>

#include "bnb/dtype.h"
#include "bnb/optimizer.h"

namespace bnb::cpu {

// float32 states.
void optimizer_update_32bit(DType dtype, const OptimizerHyper& h, const TensorSlot* slots, int64_t count);

// 8-bit states: codes into code1 (state1) and code2 (state2, two-state algorithms), scaled
// by absmax per 256 values (h.block_wise) or per tensor; dequantize, update in float32 and
// requantize with the new absmax in one pass.
void optimizer_update_8bit(DType dtype, const OptimizerHyper& h, const TensorSlot* slots, int64_t count,
                           const float* code1, const float* code2);

// 4-bit states (StateFormat::Code4): codes into 16-entry maps code1/code2, two a byte, scaled
// by absmax per 128 values; the same one pass. h.block_wise must be set and h.max_unorm 0
// (what the op allows for 4-bit state, as the CUDA kernel has no pre-pass for it).
void optimizer_update_4bit(DType dtype, const OptimizerHyper& h, const TensorSlot* slots, int64_t count,
                           const float* code1, const float* code2);

}  // namespace bnb::cpu
