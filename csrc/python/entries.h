// The extension module's direct Python entries (module.cpp lists them). Only
// bitsandbytes/_extension.py calls them.
#pragma once
#include <Python.h>

namespace bnb::python {

// optimizer_entries.cpp: the optimizer step with its tensor lists handed over once.
PyObject* optimizer_tensors(PyObject* self, PyObject* args);
PyObject* optimizer_step(PyObject* self, PyObject* args);
PyObject* optimizer_grads(PyObject* self, PyObject* args);
PyObject* optimizer_grads_match(PyObject* self, PyObject* handle);

}  // namespace bnb::python
