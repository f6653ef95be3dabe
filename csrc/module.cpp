// The bitsandbytes._C extension module. Importing it loads the shared library, whose static
// initialisers register the torch custom ops. It also holds the direct Python entries of
// python_entries.h: eager fast paths to ops whose host time through torch.ops would rival
// their device time.
#include "python_entries.h"

namespace {

PyMethodDef methods[] = {
    {"int8_weight_linear_inference", bnb::python::int8_weight_linear_inference, METH_VARARGS,
     "int8_weight_linear_inference(A, CB, SCB, bias) -> Tensor or None: torch.ops.bitsandbytes.int8_weight_linear "
     "for eager inference (at most 32 rows, no gradient needed), None where it does not apply."},
    {"optimizer_prepare", bnb::python::optimizer_prepare, METH_VARARGS,
     "optimizer_prepare(params, state1, state2, absmax1, absmax2) -> handle holding the tensors of one "
     "optimizer launch, for optimizer_update_prepared."},
    {"optimizer_update_prepared", bnb::python::optimizer_update_prepared, METH_VARARGS,
     "optimizer_update_prepared(handle, grads, algorithm, qmap1, qmap2, gnorm_scale, workspace, table, table_host, "
     "lr, beta1, beta2, eps, weight_decay, decoupled, bias_correction1, bias_correction2, dampening, nesterov, step, "
     "max_unorm, block_wise) -> True, or None where torch.ops.bitsandbytes.optimizer_update must be called instead. "
     "grads None: each parameter's .grad (False if one has none)."},
    {"optimizer_grads_prepare", bnb::python::optimizer_grads_prepare, METH_VARARGS,
     "optimizer_grads_prepare(params) -> handle recording which parameters have a gradient now, or None where "
     "a parameter is no plain tensor."},
    {"optimizer_grads_match", bnb::python::optimizer_grads_match, METH_O,
     "optimizer_grads_match(handle) -> whether the same parameters have a gradient as when the handle was made."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "bitsandbytes custom operators", -1, methods};
  return PyModule_Create(&module);
}
