// The extension module's direct Python entries (METH_VARARGS functions), one file each.
#pragma once
#include <Python.h>

namespace bnb::python {

// python_int8.cpp: the decode product for eager inference.
PyObject* int8_weight_linear_inference(PyObject* self, PyObject* args);

// python_optimizer.cpp: the optimizer update with the launch's tensors handed over once.
PyObject* optimizer_prepare(PyObject* self, PyObject* args);
PyObject* optimizer_update_prepared(PyObject* self, PyObject* args);
PyObject* optimizer_grads_prepare(PyObject* self, PyObject* args);
PyObject* optimizer_grads_match(PyObject* self, PyObject* handle);

}  // namespace bnb::python
