// Helpers of the extension's direct Python entries (module.cpp): which Python objects may be
// handed to an op below the Python layer with the same result as torch.ops would give.
#pragma once
#include <Python.h>

#include <ATen/PythonTorchFunctionTLS.h>
#include <c10/core/impl/TorchDispatchModeTLS.h>
#include <torch/csrc/autograd/python_variable.h>

namespace bnb::python {

// A tensor whose type has no __torch_function__ of its own: torch.Tensor, or a subclass that
// disables it (Parameter, Int8Params).
inline bool plain(PyObject* obj) {
  if (!THPVariable_Check(obj)) return false;
  PyTypeObject* type = Py_TYPE(obj);
  if (type == reinterpret_cast<PyTypeObject*>(THPVariableClass)) return true;
  static PyObject* name = PyUnicode_InternFromString("__torch_function__");
  static PyObject* disabled = [] {
    PyObject* mod = PyImport_ImportModule("torch._C");
    PyObject* fn = mod ? PyObject_GetAttrString(mod, "_disabled_torch_function_impl") : nullptr;
    Py_XDECREF(mod);
    PyErr_Clear();
    return fn;  // kept for the life of the process
  }();
  if (!name || !disabled) return false;
  PyObject* impl = _PyType_Lookup(type, name);  // borrowed
  if (!impl) return false;
  // The attribute is a classmethod-like descriptor on some types: compare what it wraps too.
  if (impl == disabled) return true;
  PyObject* func = PyObject_GetAttrString(impl, "__func__");
  const bool same = func == disabled;
  Py_XDECREF(func);
  PyErr_Clear();
  return same;
}

// A torch-function or dispatch mode is active: the call must go through torch.ops.
inline bool modes_active() {
  return c10::impl::TorchDispatchModeTLS::any_modes_set() || at::impl::torch_function_mode_enabled();
}

}  // namespace bnb::python
