// Typed dispatcher handles of the ops that C++ calls through the dispatcher itself (the
// Autograd and composite kernels, the optimizer's direct entry), each written once: a call through one of
// these passes every dispatch key the op has, exactly as torch.ops does.
#pragma once
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/Tensor.h>
#include <c10/util/string_view.h>

#include <optional>

namespace bnb::ops {

using OptimizerUpdateFn =
    void(c10::string_view, at::TensorList, at::TensorList, at::TensorList, at::TensorList, at::TensorList,
         at::TensorList, const std::optional<at::Tensor>&, const std::optional<at::Tensor>&,
         const std::optional<at::Tensor>&, double, double, double, double, double, double, double, bool, double, double,
         double, bool, int64_t, double, bool);

inline const c10::TypedOperatorHandle<OptimizerUpdateFn>& optimizer_update_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("bitsandbytes::optimizer_update", "")
                             .typed<OptimizerUpdateFn>();
  return op;
}

using Int8WeightLinearFn = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                      const std::optional<at::Tensor>&);

inline const c10::TypedOperatorHandle<Int8WeightLinearFn>& int8_weight_linear_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("bitsandbytes::int8_weight_linear", "")
                             .typed<Int8WeightLinearFn>();
  return op;
}

using Int8LinearMatmulFn = at::Tensor(const at::Tensor&, const at::Tensor&);

inline const c10::TypedOperatorHandle<Int8LinearMatmulFn>& int8_linear_matmul_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("bitsandbytes::int8_linear_matmul", "")
                             .typed<Int8LinearMatmulFn>();
  return op;
}

using Int8MmDequantFn = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                   std::optional<c10::ScalarType>, const std::optional<at::Tensor>&);

inline const c10::TypedOperatorHandle<Int8MmDequantFn>& int8_mm_dequant_op() {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("bitsandbytes::int8_mm_dequant", "")
                             .typed<Int8MmDequantFn>();
  return op;
}

}  // namespace bnb::ops
