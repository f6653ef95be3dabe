// The multi-tensor optimizer update op, written once over a device's update (CPU or CUDA):
// argument checks and the per-tensor slots here, arithmetic in kernels/. The update
// (Update::update(like, dtype, hyper, format, slots, code1, code2), in
// cpu/ and cuda/optimizer_registration.cpp) gives each slot its statistics scratch and
// launches. It is an adapter of its own rather than a launcher of cpu/ or cuda/backend.h
// because the devices take the slots differently: the CPU kernels read them from host
// memory, the CUDA kernel from a device table that the op layer keeps (optimizer_launch.h).
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>
#include <optional>
#include <vector>

#include "bnb/optimizer.h"
#include "checks.h"

namespace bnb::ops {

inline Algorithm parse_algorithm(c10::string_view name, const char* op) {
  if (name == "adam") return Algorithm::Adam;
  if (name == "momentum") return Algorithm::Momentum;
  if (name == "rmsprop") return Algorithm::RMSprop;
  if (name == "adagrad") return Algorithm::Adagrad;
  if (name == "lion") return Algorithm::Lion;
  if (name == "ademamix") return Algorithm::AdEMAMix;
  BNB_CHECK_VALUE(false, op, ": algorithm must be one of adam, momentum, rmsprop, adagrad, lion, ademamix, got '",
              std::string(name), "'");
}

inline void check_list_size(at::TensorList list, size_t want, const char* op, const char* arg) {
  BNB_CHECK_VALUE(list.size() == want, op, ": ", arg, " must hold one tensor per parameter (", want, "), got ",
              list.size());
}

// stacked: the state holds `stacked` states of the parameter's values (AdEMAMix's state1: 2).
inline void check_state(const at::Tensor& s, const at::Tensor& p, c10::ScalarType want, StateFormat format,
                        const char* op, const char* arg, size_t i, int64_t stacked = 1) {
  BNB_CHECK_TYPE(s.scalar_type() == want, op, ": ", arg, "[", i, "] must be ", want, " like ", arg,
                   "[0], got ", s.scalar_type());
  check_same_device(s, p, op, arg, "params");
  if (format == StateFormat::Code4)
    BNB_CHECK_VALUE(s.numel() == state_bytes(format, p.numel()), op, ": ", arg, "[", i, "] must hold ",
                    state_bytes(format, p.numel()), " bytes for the ", p.numel(), " values of params[", i,
                    "] (4-bit codes, two a byte), got ", s.numel());
  else
    BNB_CHECK_VALUE(s.numel() == stacked * p.numel(), op, ": ", arg, "[", i, "] must hold ", stacked * p.numel(),
                    " values (", stacked, " per value of params[", i, "]), got ", s.numel());
  BNB_CHECK_VALUE(s.is_contiguous(), op, ": ", arg, "[", i, "] must be contiguous (it is updated in place)");
}

inline void check_map(const std::optional<at::Tensor>& code, const QuantFormat& format, const at::Tensor& p,
                      const char* op, const char* arg) {
  BNB_CHECK_VALUE(code.has_value(), op, ": ", arg, " (the state's map) is required for uint8 state");
  check_code(*code, format, p, op, arg, "params");
  BNB_CHECK_VALUE(code->is_contiguous(), op, ": ", arg, " must be contiguous");
}

// The format of uint8 state, told by its first map: 256 entries for 8-bit codes, 16 for 4-bit.
inline StateFormat quantized_format(const std::optional<at::Tensor>& qmap1, const char* op) {
  BNB_CHECK_VALUE(qmap1.has_value(), op, ": qmap1 (the state's map) is required for uint8 state");
  const int64_t size = qmap1->numel();
  BNB_CHECK_VALUE(size == kFormat8bit.map_size || size == kFormat4bit.map_size, op, ": qmap1 must hold ",
                  kFormat8bit.map_size, " values (8-bit state) or ", kFormat4bit.map_size,
                  " (4-bit state), got ", size);
  return size == kFormat4bit.map_size ? StateFormat::Code4 : StateFormat::Code8;
}

inline void check_absmax_list(at::TensorList absmax, at::TensorList params, bool block_wise, StateFormat format,
                              const char* op, const char* arg, int64_t stacked = 1) {
  check_list_size(absmax, params.size(), op, arg);
  const int64_t block = state_block(format);
  for (size_t i = 0; i < params.size(); ++i) {
    const int64_t want = stacked * (block_wise ? num_blocks(params[i].numel(), block) : 1);
    check_dtype(absmax[i], c10::ScalarType::Float, op, arg);
    check_same_device(absmax[i], params[i], op, arg, "params");
    BNB_CHECK_VALUE(absmax[i].numel() == want && absmax[i].is_contiguous(), op, ": ", arg, "[", i, "] must hold ", want,
                " contiguous float32 values (",
                    block_wise ? (block == kOptimizerBlock ? "one per 256 values" : "one per 128 values")
                               : "one per tensor", "), got ",
                absmax[i].numel());
  }
}

template <class Update>
void optimizer_update(c10::string_view algorithm, at::TensorList params, at::TensorList grads,
                      at::TensorList state1, at::TensorList state2, at::TensorList absmax1, at::TensorList absmax2,
                      const std::optional<at::Tensor>& qmap1, const std::optional<at::Tensor>& qmap2,
                      const std::optional<at::Tensor>& gnorm_scale, double lr, double beta1, double beta2,
                      double beta3, double alpha, double eps, double weight_decay, bool decoupled_weight_decay,
                      double bias_correction1, double bias_correction2, double dampening, bool nesterov, int64_t step,
                      double max_unorm, bool block_wise) {
  constexpr const char* op = "optimizer_update";
  const Algorithm algo = parse_algorithm(algorithm, op);
  const bool two = num_states(algo) == 2;
  const bool three = has_state3(algo);
  const int64_t stacked1 = three ? 2 : 1;  // state1 (and absmax1) hold the first and third states
  const size_t count = params.size();
  if (count == 0) return;
  const at::Tensor& p0 = params[0];
  const DType dt = kernel_dtype(p0.scalar_type(), op, "params");
  check_list_size(grads, count, op, "grads");
  check_list_size(state1, count, op, "state1");
  check_list_size(state2, two ? count : 0, op, "state2");
  const bool quantized = state1[0].scalar_type() == at::kByte;
  BNB_CHECK_TYPE(quantized || state1[0].scalar_type() == at::kFloat, op,
                 ": state1 must be float32 (32-bit state) or uint8 (8-bit or 4-bit codes), got ",
                 state1[0].scalar_type());
  const c10::ScalarType state_type = state1[0].scalar_type();
  const StateFormat format = quantized ? quantized_format(qmap1, op) : StateFormat::Float32;
  BNB_CHECK_VALUE(step >= 1, op, ": step must be >= 1 (the step being taken), got ", step);
  // the second moment stays >= 0 only then (its 8-bit lookup relies on it)
  BNB_CHECK_VALUE(!two || (beta2 >= 0.0 && beta2 <= 1.0), op, ": beta2 must be in [0, 1], got ", beta2);
  if (format == StateFormat::Code4) {  // what the 4-bit kernels implement: Adam's one pass
    BNB_CHECK_VALUE(algo == Algorithm::Adam, op, ": 4-bit state is implemented for algorithm 'adam', got '",
                    std::string(algorithm), "'");
    BNB_CHECK_VALUE(block_wise, op, ": 4-bit state is block-wise (one absmax per 128 values); block_wise must be True");
    BNB_CHECK_VALUE(max_unorm == 0.0, op, ": 4-bit state takes no trust ratio; max_unorm must be 0, got ", max_unorm);
  }
  if (three) {
    BNB_CHECK_VALUE(max_unorm <= 0.0, op, ": max_unorm (the trust ratio) is not supported by ademamix, got ",
                    max_unorm);
    BNB_CHECK_VALUE(block_wise || !quantized, op, ": ademamix keeps 8-bit state block-wise only (block_wise=True)");
  }
  if (quantized) {
    const QuantFormat& codes = format == StateFormat::Code4 ? kFormat4bit : kFormat8bit;
    check_map(qmap1, codes, p0, op, "qmap1");
    if (two) check_map(qmap2, codes, p0, op, "qmap2");
    check_absmax_list(absmax1, params, block_wise, format, op, "absmax1", stacked1);
    if (two) check_absmax_list(absmax2, params, block_wise, format, op, "absmax2");
  }
  if (gnorm_scale.has_value()) {
    check_dtype(*gnorm_scale, c10::ScalarType::Float, op, "gnorm_scale");
    check_same_device(*gnorm_scale, p0, op, "gnorm_scale", "params");
    BNB_CHECK_VALUE(gnorm_scale->numel() == int64_t(count) && gnorm_scale->is_contiguous(), op,
                ": gnorm_scale must hold one contiguous float32 value per parameter (", count, "), got ",
                gnorm_scale->numel());
  }
  std::vector<at::Tensor> grads_c;  // contiguous gradients, kept alive until the launch is queued
  grads_c.reserve(count);
  std::vector<TensorSlot> slots(count);
  const float* scale = gnorm_scale.has_value() ? gnorm_scale->const_data_ptr<float>() : nullptr;
  for (size_t i = 0; i < count; ++i) {
    const at::Tensor& p = params[i];
    BNB_CHECK_TYPE(p.scalar_type() == p0.scalar_type(), op, ": params[", i, "] is ", p.scalar_type(),
                     " but params[0] is ", p0.scalar_type(), "; one launch updates one dtype");
    check_same_device(p, p0, op, "params[i]", "params[0]");
    BNB_CHECK_VALUE(p.is_contiguous(), op, ": params[", i, "] must be contiguous (it is updated in place)");
    BNB_CHECK_VALUE(!grads[i].is_sparse(), op, ": grads[", i, "] is sparse; the optimizers need dense gradients");
    BNB_CHECK_TYPE(grads[i].scalar_type() == p.scalar_type(), op, ": grads[", i, "] must have the dtype of params[",
                     i, "] (", p.scalar_type(), "), got ", grads[i].scalar_type());
    check_same_device(grads[i], p, op, "grads", "params");
    BNB_CHECK_VALUE(grads[i].numel() == p.numel(), op, ": grads[", i, "] must hold ", p.numel(), " values, got ",
                grads[i].numel());
    check_state(state1[i], p, state_type, format, op, "state1", i, stacked1);
    if (two) check_state(state2[i], p, state_type, format, op, "state2", i);
    // contiguous() goes through the dispatcher even for a contiguous tensor: skip it then
    grads_c.push_back(grads[i].is_contiguous() ? grads[i] : grads[i].contiguous());
    TensorSlot& s = slots[i];
    s.p = p.data_ptr();
    s.g = grads_c.back().const_data_ptr();
    s.state1 = state1[i].data_ptr();
    s.state2 = two ? state2[i].data_ptr() : nullptr;
    s.absmax1 = quantized ? absmax1[i].mutable_data_ptr<float>() : nullptr;
    s.absmax2 = quantized && two ? absmax2[i].mutable_data_ptr<float>() : nullptr;
    // the third state is the second half of state1 (and of absmax1); 8-bit or float32 only
    s.state3 = three ? static_cast<char*>(s.state1) + p.numel() * state1[i].element_size() : nullptr;
    s.absmax3 = three && quantized ? s.absmax1 + num_blocks(p.numel(), kOptimizerBlock) : nullptr;
    s.gnorm_scale = scale ? scale + i : nullptr;
    s.stats = nullptr;  // the backend's scratch
    s.n = p.numel();
  }

  OptimizerHyper h{};
  h.algorithm = algo;
  h.lr = float(lr);
  h.beta1 = float(beta1);
  h.beta2 = float(beta2);
  h.beta3 = float(beta3);
  h.alpha = float(alpha);
  h.eps = float(eps);
  h.weight_decay = float(weight_decay);
  h.decoupled = decoupled_weight_decay;
  h.inv_bias_correction1 = float(1.0 / bias_correction1);
  h.inv_bias_correction2_sqrt = float(1.0 / std::sqrt(bias_correction2));
  h.dampening = float(dampening);
  h.nesterov = nesterov;
  h.first_step = step == 1;
  h.max_unorm = float(max_unorm);
  h.block_wise = block_wise;
  const float* code1 = quantized ? qmap1->const_data_ptr<float>() : nullptr;
  const float* code2 = quantized && two ? qmap2->const_data_ptr<float>() : nullptr;
  Update::update(p0, dt, h, format, slots, code1, code2);
}

}  // namespace bnb::ops
