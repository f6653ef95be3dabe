// Direct Python entries of the multi-tensor optimizer update: optimizer_prepare and
// optimizer_update_prepared.
//
// Why: a launch of a model's 8-bit state passes six lists of a few hundred tensors to
// torch.ops.bitsandbytes.optimizer_update at every step, and turning those Python lists into
// the dispatcher's arguments cost more host time (about 0.1 us a tensor) than all the op's own
// work. Only the gradients change from step to step (the optimizer rebuilds its launch plan
// when anything else does), so the other lists are handed over once, to a handle, and each
// step passes the gradients and the scalars. The update is the same op, called through the
// dispatcher, so the result is the op's bit for bit; where a torch-function or dispatch mode is
// active, or grad mode is on, the entry returns None and the caller takes torch.ops.
//
// The gradients may be left to the entry (grads None): it reads each parameter's .grad, and
// optimizer_grads_match tells, for all of an optimizer's parameters at once, whether the set
// with a gradient is still the one its launch plan was built for. The call skips the autograd
// dispatch keys (the update runs without grad mode; their boxed fallback cost about 0.7 us a
// tensor) and bumps the version counters of the tensors it writes, as that fallback would.
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/Tensor.h>
#include <c10/core/GradMode.h>
#include <c10/core/impl/LocalDispatchKeySet.h>
#include <torch/csrc/Exceptions.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "python_entries.h"
#include "python_tensor.h"

namespace {

constexpr char kCapsule[] = "bitsandbytes.PreparedUpdate";
constexpr char kGradsCapsule[] = "bitsandbytes.PreparedGrads";

// A capsule named Name that owns `object` (deleted with the capsule); null with a Python error.
template <typename T, const char* Name>
PyObject* owning_capsule(std::unique_ptr<T> object) {
  PyObject* capsule = PyCapsule_New(object.get(), Name, [](PyObject* cap) {
    delete static_cast<T*>(PyCapsule_GetPointer(cap, Name));
  });
  if (capsule) object.release();
  return capsule;
}

// The object of a capsule made by owning_capsule<T, Name>; null with a TypeError naming
// `maker` where `handle` is none.
template <typename T, const char* Name>
T* capsule_object(PyObject* handle, const char* entry, const char* maker) {
  if (!PyCapsule_IsValid(handle, Name)) {
    PyErr_Format(PyExc_TypeError, "%s: handle must come from %s", entry, maker);
    return nullptr;
  }
  return static_cast<T*>(PyCapsule_GetPointer(handle, Name));
}

// The tensors of one launch that stay the same from step to step.
struct PreparedUpdate {
  std::vector<at::Tensor> params, state1, state2, absmax1, absmax2;
};

// The tensors of a Python list or tuple `obj` into `out`. Returns -1, or the index of the first
// item that is not a plain tensor (-2 if obj is no list or tuple).
Py_ssize_t unpack_plain(PyObject* obj, std::vector<at::Tensor>& out) {
  if (!PyList_Check(obj) && !PyTuple_Check(obj)) return -2;
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(obj);
  PyObject** items = PySequence_Fast_ITEMS(obj);
  out.clear();
  out.reserve(size_t(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    if (!bnb::python::plain(items[i])) return i;
    out.push_back(THPVariable_Unpack(items[i]));
  }
  return -1;
}

// unpack_plain for optimizer_prepare: false with a TypeError naming the argument.
bool tensor_list(PyObject* obj, const char* arg, std::vector<at::Tensor>& out) {
  const Py_ssize_t bad = unpack_plain(obj, out);
  if (bad == -2) PyErr_Format(PyExc_TypeError, "optimizer_prepare: %s must be a list of tensors", arg);
  else if (bad >= 0) PyErr_Format(PyExc_TypeError, "optimizer_prepare: %s[%zd] must be a plain tensor", arg, bad);
  return bad == -1;
}

// An optimizer's parameters and which of them had a gradient when its launch plan was built.
struct PreparedGrads {
  std::vector<at::Tensor> params;
  std::vector<bool> had_grad;
};

// The tensors a launch writes get a new version, as the autograd fallback gives mutated
// arguments.
void bump_versions(const std::vector<at::Tensor>& tensors) {
  for (const at::Tensor& t : tensors)
    if (t.defined() && !t.unsafeGetTensorImpl()->is_inference()) t.unsafeGetTensorImpl()->bump_version();
}

std::optional<at::Tensor> optional_tensor(PyObject* obj) {
  if (obj == Py_None) return std::nullopt;
  return THPVariable_Unpack(obj);
}

}  // namespace

PyObject* bnb::python::optimizer_prepare(PyObject* /*self*/, PyObject* args) {
  HANDLE_TH_ERRORS
  PyObject *params, *state1, *state2, *absmax1, *absmax2;
  if (!PyArg_UnpackTuple(args, "optimizer_prepare", 5, 5, &params, &state1, &state2, &absmax1, &absmax2))
    return nullptr;
  auto prepared = std::make_unique<PreparedUpdate>();
  if (!tensor_list(params, "params", prepared->params) || !tensor_list(state1, "state1", prepared->state1) ||
      !tensor_list(state2, "state2", prepared->state2) || !tensor_list(absmax1, "absmax1", prepared->absmax1) ||
      !tensor_list(absmax2, "absmax2", prepared->absmax2))
    return nullptr;
  return owning_capsule<PreparedUpdate, kCapsule>(std::move(prepared));
  END_HANDLE_TH_ERRORS
}

PyObject* bnb::python::optimizer_update_prepared(PyObject* /*self*/, PyObject* args) {
  HANDLE_TH_ERRORS
  PyObject *handle, *grads_obj, *qmap1, *qmap2, *gnorm_scale, *workspace, *table, *table_host;
  const char* algorithm;
  double lr, beta1, beta2, eps, weight_decay, bc1, bc2, dampening, max_unorm;
  int decoupled, nesterov, block_wise;
  long long step;
  if (!PyArg_ParseTuple(args, "OOsOOOOOOdddddpdddpLdp", &handle, &grads_obj, &algorithm, &qmap1, &qmap2,
                        &gnorm_scale, &workspace, &table, &table_host, &lr, &beta1, &beta2, &eps, &weight_decay,
                        &decoupled, &bc1, &bc2, &dampening, &nesterov, &step, &max_unorm, &block_wise))
    return nullptr;
  auto* prepared =
      capsule_object<PreparedUpdate, kCapsule>(handle, "optimizer_update_prepared", "optimizer_prepare");
  if (!prepared) return nullptr;
  if (bnb::python::modes_active() || c10::GradMode::is_enabled()) Py_RETURN_NONE;
  for (PyObject* obj : {qmap1, qmap2, gnorm_scale})
    if (obj != Py_None && !bnb::python::plain(obj)) Py_RETURN_NONE;
  for (PyObject* obj : {workspace, table, table_host})
    if (!bnb::python::plain(obj)) Py_RETURN_NONE;
  std::vector<at::Tensor> grads;
  if (grads_obj == Py_None) {  // each parameter's .grad
    grads.reserve(prepared->params.size());
    for (const at::Tensor& p : prepared->params) {
      grads.push_back(p.grad());
      if (!grads.back().defined()) Py_RETURN_FALSE;  // the plan is out of date
    }
  } else if (unpack_plain(grads_obj, grads) != -1) {
    Py_RETURN_NONE;  // torch.ops takes (or refuses) them
  }

  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("bitsandbytes::optimizer_update", "")
          .typed<void(c10::string_view, at::TensorList, at::TensorList, at::TensorList, at::TensorList,
                      at::TensorList, at::TensorList, const std::optional<at::Tensor>&,
                      const std::optional<at::Tensor>&, const std::optional<at::Tensor>&, const at::Tensor&,
                      const at::Tensor&, const at::Tensor&, double, double, double, double, double, bool, double,
                      double, double, bool, int64_t, double, bool)>();
  const std::string algo(algorithm);
  const std::optional<at::Tensor> q1 = optional_tensor(qmap1), q2 = optional_tensor(qmap2),
                                  scale = optional_tensor(gnorm_scale);
  const at::Tensor& ws = THPVariable_Unpack(workspace);
  const at::Tensor& tab = THPVariable_Unpack(table);
  const at::Tensor& tab_host = THPVariable_Unpack(table_host);
  {
    const c10::impl::ExcludeDispatchKeyGuard no_autograd(c10::autograd_dispatch_keyset_with_ADInplaceOrView);
    op.call(algo, prepared->params, grads, prepared->state1, prepared->state2, prepared->absmax1, prepared->absmax2,
            q1, q2, scale, ws, tab, tab_host, lr, beta1, beta2, eps, weight_decay, decoupled != 0, bc1, bc2, dampening,
            nesterov != 0, int64_t(step), max_unorm, block_wise != 0);
  }
  for (const auto* list : {&prepared->params, &prepared->state1, &prepared->state2, &prepared->absmax1,
                           &prepared->absmax2})
    bump_versions(*list);
  Py_RETURN_TRUE;
  END_HANDLE_TH_ERRORS
}

PyObject* bnb::python::optimizer_grads_prepare(PyObject* /*self*/, PyObject* args) {
  HANDLE_TH_ERRORS
  PyObject* params;
  if (!PyArg_UnpackTuple(args, "optimizer_grads_prepare", 1, 1, &params)) return nullptr;
  auto prepared = std::make_unique<PreparedGrads>();
  if (unpack_plain(params, prepared->params) != -1) Py_RETURN_NONE;  // the caller looks at .grad itself
  for (const at::Tensor& p : prepared->params) prepared->had_grad.push_back(p.grad().defined());
  return owning_capsule<PreparedGrads, kGradsCapsule>(std::move(prepared));
  END_HANDLE_TH_ERRORS
}

PyObject* bnb::python::optimizer_grads_match(PyObject* /*self*/, PyObject* handle) {
  HANDLE_TH_ERRORS
  const auto* prepared =
      capsule_object<PreparedGrads, kGradsCapsule>(handle, "optimizer_grads_match", "optimizer_grads_prepare");
  if (!prepared) return nullptr;
  for (size_t i = 0; i < prepared->params.size(); ++i)
    if (prepared->params[i].grad().defined() != prepared->had_grad[i]) Py_RETURN_FALSE;
  Py_RETURN_TRUE;
  END_HANDLE_TH_ERRORS
}
