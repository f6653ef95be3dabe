// Direct Python entry of the int8 decode product: int8_weight_linear_inference.
//
// Why a direct entry: at decode sizes the weight-streaming kernel takes tens of microseconds,
// as long as the host's work to reach it through torch.ops (the op's autograd kernel is
// Python, and runs even under no_grad). This entry checks that no gradient, no tensor
// subclass and no torch-function or dispatch mode is involved, then calls the same op
// below the autograd keys, so the result is the op's, bit for bit. Where any of that does
// not hold it returns None and the caller takes the op.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/Tensor.h>
#include <c10/core/GradMode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <pybind11/pybind11.h>
#include <torch/csrc/Exceptions.h>

#include <optional>

#include "python_entries.h"
#include "python_tensor.h"

namespace {

// The most rows of A for which the inference entry applies (the decode path of
// bitsandbytes.autograd._functions.WEIGHT_STREAM_MAX_ROWS).
constexpr int64_t kMaxRows = 32;

}  // namespace

PyObject* bnb::python::int8_weight_linear_inference(PyObject* /*self*/, PyObject* args) {
  HANDLE_TH_ERRORS
  PyObject *x_obj = nullptr, *w_obj = nullptr, *scb_obj = nullptr, *bias_obj = nullptr;
  if (!PyArg_UnpackTuple(args, "int8_weight_linear_inference", 4, 4, &x_obj, &w_obj, &scb_obj, &bias_obj))
    return nullptr;
  const bool has_bias = bias_obj != Py_None;
  using bnb::python::plain;
  if (!plain(x_obj) || !plain(w_obj) || !plain(scb_obj) || (has_bias && !plain(bias_obj))) Py_RETURN_NONE;
  if (bnb::python::modes_active()) Py_RETURN_NONE;
  const at::Tensor& x = THPVariable_Unpack(x_obj);
  const at::Tensor& w = THPVariable_Unpack(w_obj);
  const at::Tensor& scb = THPVariable_Unpack(scb_obj);
  const auto dtype = x.scalar_type();
  if (!(x.is_cuda() || x.is_cpu()) || !(dtype == at::kHalf || dtype == at::kBFloat16 || dtype == at::kFloat))
    Py_RETURN_NONE;
  if (x.dim() < 1 || w.dim() != 2 || w.scalar_type() != at::kChar || scb.scalar_type() != at::kFloat)
    Py_RETURN_NONE;
  const int64_t K = x.size(-1), N = w.size(0);
  if (K == 0 || w.size(1) != K || x.numel() == 0 || x.numel() / K > kMaxRows || scb.numel() != N) Py_RETURN_NONE;
  if (w.device() != x.device() || scb.device() != x.device()) Py_RETURN_NONE;
  std::optional<at::Tensor> bias;
  if (has_bias) {
    const at::Tensor& b = THPVariable_Unpack(bias_obj);
    if (b.scalar_type() != dtype || b.numel() != N || b.device() != x.device()) Py_RETURN_NONE;
    bias = b;
  }
  if (c10::GradMode::is_enabled() && (x.requires_grad() || (bias && bias->requires_grad()))) Py_RETURN_NONE;

  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("bitsandbytes::int8_weight_linear", "")
          .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&)>();
  at::Tensor out;
  {
    pybind11::gil_scoped_release no_gil;
    const c10::impl::ExcludeDispatchKeyGuard below_autograd(c10::autograd_dispatch_keyset_with_ADInplaceOrView);
    out = op.call(x, w, scb, bias);
  }
  return THPVariable_Wrap(std::move(out));
  END_HANDLE_TH_ERRORS
}

