// The optimizer step with its tensor lists handed over once.
//
// Why: a launch of a model's 8-bit state names six lists of a few hundred tensors, and turning
// those Python lists into the dispatcher's arguments at every step through torch.ops cost more
// host time (about 0.1 us a tensor) than all of the op's own work. Only the gradients change
// from step to step (the optimizer rebuilds its launch plan when anything else does), so the
// other lists are handed over once, to a handle, and a step passes the scalars, reading each
// parameter's .grad itself. The step is the op itself, called through the dispatcher with every
// dispatch key (its Autograd kernel, dispatch modes, other backends), so it checks, fails and
// computes exactly as torch.ops.bitsandbytes.optimizer_update does. What the dispatcher cannot
// see (a torch-function override) is decided in Python before a handle is used
// (bitsandbytes/_extension.py).
#include <ATen/core/Tensor.h>
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/python_variable.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "entries.h"
#include "../ops/dispatch_handles.h"

namespace {

constexpr char kLaunchCapsule[] = "bitsandbytes.OptimizerTensors";
constexpr char kGradsCapsule[] = "bitsandbytes.OptimizerGrads";

// A capsule named Name that owns `object` (deleted with the capsule); null with a Python error.
template <typename T, const char* Name>
PyObject* owning_capsule(std::unique_ptr<T> object) {
  PyObject* capsule = PyCapsule_New(object.get(), Name, [](PyObject* cap) {
    delete static_cast<T*>(PyCapsule_GetPointer(cap, Name));
  });
  if (capsule) object.release();
  return capsule;
}

// The object of a capsule made by owning_capsule<T, Name>; null with a TypeError naming the
// entry that makes such handles where `handle` is none.
template <typename T, const char* Name>
T* capsule_object(PyObject* handle, const char* entry, const char* maker) {
  if (!PyCapsule_IsValid(handle, Name)) {
    PyErr_Format(PyExc_TypeError, "%s: handle must come from %s", entry, maker);
    return nullptr;
  }
  return static_cast<T*>(PyCapsule_GetPointer(handle, Name));
}

// The tensors of a Python list or tuple into `out`; false with a TypeError naming the argument.
bool tensor_list(PyObject* obj, const char* entry, const char* arg, std::vector<at::Tensor>& out) {
  if (!PyList_Check(obj) && !PyTuple_Check(obj)) {
    PyErr_Format(PyExc_TypeError, "%s: %s must be a list of tensors", entry, arg);
    return false;
  }
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(obj);
  PyObject** items = PySequence_Fast_ITEMS(obj);
  out.clear();
  out.reserve(size_t(n));
  for (Py_ssize_t i = 0; i < n; ++i) {
    if (!THPVariable_Check(items[i])) {
      PyErr_Format(PyExc_TypeError, "%s: %s[%zd] must be a tensor", entry, arg, i);
      return false;
    }
    out.push_back(THPVariable_Unpack(items[i]));
  }
  return true;
}

std::optional<at::Tensor> optional_tensor(PyObject* obj) {
  if (obj == Py_None) return std::nullopt;
  return THPVariable_Unpack(obj);
}

// The tensors of one launch that stay the same from step to step.
struct OptimizerTensors {
  std::vector<at::Tensor> params, state1, state2, absmax1, absmax2;
};

// An optimizer's parameters and which of them had a gradient when its launch plan was built.
struct OptimizerGrads {
  std::vector<at::Tensor> params;
  std::vector<bool> had_grad;
};

}  // namespace

PyObject* bnb::python::optimizer_tensors(PyObject* /*self*/, PyObject* args) {
  HANDLE_TH_ERRORS
  constexpr const char* entry = "optimizer_tensors";
  PyObject *params, *state1, *state2, *absmax1, *absmax2;
  if (!PyArg_UnpackTuple(args, entry, 5, 5, &params, &state1, &state2, &absmax1, &absmax2)) return nullptr;
  auto tensors = std::make_unique<OptimizerTensors>();
  if (!tensor_list(params, entry, "params", tensors->params) ||
      !tensor_list(state1, entry, "state1", tensors->state1) ||
      !tensor_list(state2, entry, "state2", tensors->state2) ||
      !tensor_list(absmax1, entry, "absmax1", tensors->absmax1) ||
      !tensor_list(absmax2, entry, "absmax2", tensors->absmax2))
    return nullptr;
  return owning_capsule<OptimizerTensors, kLaunchCapsule>(std::move(tensors));
  END_HANDLE_TH_ERRORS
}

PyObject* bnb::python::optimizer_step(PyObject* /*self*/, PyObject* args) {
  HANDLE_TH_ERRORS
  PyObject *handle, *qmap1, *qmap2, *gnorm_scale;
  const char* algorithm;
  double lr, beta1, beta2, beta3, alpha, eps, weight_decay, bc1, bc2, dampening, max_unorm;
  int decoupled, nesterov, block_wise;
  long long step;
  if (!PyArg_ParseTuple(args, "OsOOOdddddddpdddpLdp", &handle, &algorithm, &qmap1, &qmap2, &gnorm_scale, &lr,
                        &beta1, &beta2, &beta3, &alpha, &eps, &weight_decay, &decoupled, &bc1, &bc2, &dampening,
                        &nesterov, &step, &max_unorm, &block_wise))
    return nullptr;
  auto* tensors = capsule_object<OptimizerTensors, kLaunchCapsule>(handle, "optimizer_step", "optimizer_tensors");
  if (!tensors) return nullptr;
  for (PyObject* obj : {qmap1, qmap2, gnorm_scale}) {
    if (obj != Py_None && !THPVariable_Check(obj)) {
      PyErr_SetString(PyExc_TypeError, "optimizer_step: qmap1, qmap2 and gnorm_scale must be tensors or None");
      return nullptr;
    }
  }
  std::vector<at::Tensor> grads;
  grads.reserve(tensors->params.size());
  for (const at::Tensor& p : tensors->params) {
    grads.push_back(p.grad());
    if (!grads.back().defined()) Py_RETURN_FALSE;  // the caller's plan is out of date
  }
  bnb::ops::optimizer_update_op().call(std::string(algorithm), tensors->params, grads, tensors->state1,
                                       tensors->state2, tensors->absmax1, tensors->absmax2, optional_tensor(qmap1),
                                       optional_tensor(qmap2), optional_tensor(gnorm_scale), lr, beta1, beta2,
                                       beta3, alpha, eps, weight_decay, decoupled != 0, bc1, bc2, dampening,
                                       nesterov != 0, int64_t(step), max_unorm, block_wise != 0);
  Py_RETURN_TRUE;
  END_HANDLE_TH_ERRORS
}

PyObject* bnb::python::optimizer_grads(PyObject* /*self*/, PyObject* args) {
  HANDLE_TH_ERRORS
  PyObject* params;
  if (!PyArg_UnpackTuple(args, "optimizer_grads", 1, 1, &params)) return nullptr;
  auto grads = std::make_unique<OptimizerGrads>();
  if (!tensor_list(params, "optimizer_grads", "params", grads->params)) return nullptr;
  for (const at::Tensor& p : grads->params) grads->had_grad.push_back(p.grad().defined());
  return owning_capsule<OptimizerGrads, kGradsCapsule>(std::move(grads));
  END_HANDLE_TH_ERRORS
}

PyObject* bnb::python::optimizer_grads_match(PyObject* /*self*/, PyObject* handle) {
  HANDLE_TH_ERRORS
  const auto* grads =
      capsule_object<OptimizerGrads, kGradsCapsule>(handle, "optimizer_grads_match", "optimizer_grads");
  if (!grads) return nullptr;
  for (size_t i = 0; i < grads->params.size(); ++i)
    if (grads->params[i].grad().defined() != grads->had_grad[i]) Py_RETURN_FALSE;
  Py_RETURN_TRUE;
  END_HANDLE_TH_ERRORS
}
