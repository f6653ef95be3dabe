// The Autograd kernels of the ops that need one, in C++ so that a call from Python costs one
// dispatcher pass (a Python autograd kernel runs even under no_grad, and at decode sizes its
// host time rivalled the kernel's).
//   int8_weight_linear: differentiable in A and bias (the int8 weight is frozen), which lets
//     adapters train through it, also under torch.compile.
//   optimizer_update: not differentiable; it runs below autograd and gives the tensors it
//     writes a new version, as every in-place op does (torch's boxed fallback for ops without
//     an Autograd kernel does the same, at about 0.7 us a tensor).
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/autograd.h>
#include <torch/csrc/autograd/VariableTypeUtils.h>
#include <torch/library.h>

#include <optional>

#include "ops/checks.h"
#include "ops/dispatch_handles.h"

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor int8_weight_linear_below_autograd(const at::Tensor& A, const at::Tensor& CB, const at::Tensor& SCB,
                                             const std::optional<at::Tensor>& bias) {
  const at::AutoDispatchBelowADInplaceOrView below;
  return bnb::ops::int8_weight_linear_op().call(A, CB, SCB, bias);
}

struct Int8WeightLinear : public torch::autograd::Function<Int8WeightLinear> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& A, const at::Tensor& CB, const at::Tensor& SCB,
                            const std::optional<at::Tensor>& bias) {
    ctx->save_for_backward({CB, SCB});
    ctx->saved_data["has_bias"] = bias.has_value();
    return int8_weight_linear_below_autograd(A, CB, SCB, bias);
  }

  // grad_A = grad @ W with W = CB * SCB / 127 in grad's dtype; grad_bias = grad summed over rows.
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor& grad = grads[0];
    const at::Tensor W = saved[0].to(grad.scalar_type()) * (saved[1].to(grad.scalar_type()) / 127).unsqueeze(1);
    at::Tensor grad_bias;
    if (ctx->saved_data["has_bias"].toBool()) grad_bias = grad.reshape({-1, grad.size(-1)}).sum(0);
    return {grad.matmul(W), at::Tensor(), at::Tensor(), grad_bias};
  }
};

at::Tensor int8_weight_linear_autograd(const at::Tensor& A, const at::Tensor& CB, const at::Tensor& SCB,
                                       const std::optional<at::Tensor>& bias) {
  const bool needs_graph =
      c10::GradMode::is_enabled() && (A.requires_grad() || (bias.has_value() && bias->requires_grad()));
  if (!needs_graph) return int8_weight_linear_below_autograd(A, CB, SCB, bias);  // inference: no node to record
  return Int8WeightLinear::apply(A, CB, SCB, bias);
}

// A tensor the step writes must not be a leaf that records gradients (torch's rule for every
// in-place op under grad mode); and it gets a new version.
void check_writable(at::TensorList list, const char* arg) {
  if (!c10::GradMode::is_enabled()) return;
  for (size_t i = 0; i < list.size(); ++i)
    BNB_CHECK(!(list[i].requires_grad() && list[i].is_leaf()), "optimizer_update: ", arg, "[", i,
              "] is a leaf tensor that requires grad and grad mode is on; take the step under torch.no_grad()");
}

void bump_versions(at::TensorList list) {
  for (const at::Tensor& t : list)
    if (!t.is_inference()) torch::autograd::increment_version(t);
}

void optimizer_update_autograd(c10::DispatchKeySet keys, c10::string_view algorithm, at::TensorList params, at::TensorList grads,
                               at::TensorList state1, at::TensorList state2, at::TensorList absmax1,
                               at::TensorList absmax2, const std::optional<at::Tensor>& qmap1,
                               const std::optional<at::Tensor>& qmap2, const std::optional<at::Tensor>& gnorm_scale,
                               double lr, double beta1, double beta2, double beta3, double alpha, double eps,
                               double weight_decay,
                               bool decoupled_weight_decay, double bias_correction1, double bias_correction2,
                               double dampening, bool nesterov, int64_t step, double max_unorm, bool block_wise) {
  check_writable(params, "params");
  {
    // redispatch: the key set of ~6 lists of tensors is not computed a second time
    const at::AutoDispatchBelowADInplaceOrView below;
    bnb::ops::optimizer_update_op().redispatch(keys & c10::after_ADInplaceOrView_keyset, algorithm, params, grads,
                                               state1, state2, absmax1, absmax2, qmap1, qmap2, gnorm_scale, lr,
                                               beta1, beta2, beta3, alpha, eps, weight_decay, decoupled_weight_decay,
                                               bias_correction1, bias_correction2, dampening, nesterov, step,
                                               max_unorm, block_wise);
  }
  for (at::TensorList list : {params, state1, state2, absmax1, absmax2}) bump_versions(list);
}

}  // namespace

TORCH_LIBRARY_IMPL(bitsandbytes, Autograd, m) {
  m.impl("int8_weight_linear", &int8_weight_linear_autograd);
  m.impl("optimizer_update", &optimizer_update_autograd);
}
