// The bitsandbytes._C extension module. Importing it loads the shared library, whose static
// initialisers register the torch custom ops. It also holds the direct Python entries of
// entries.h, for the one host path (the optimizer step over hundreds of tensors) where
// converting Python lists for torch.ops would cost more than the op's own work.
#include "entries.h"

namespace {

PyMethodDef methods[] = {
    {"optimizer_tensors", bnb::python::optimizer_tensors, METH_VARARGS,
     "optimizer_tensors(params, state1, state2, absmax1, absmax2) -> handle holding the tensors of one optimizer "
     "launch, for optimizer_step."},
    {"optimizer_step", bnb::python::optimizer_step, METH_VARARGS,
     "optimizer_step(handle, algorithm, qmap1, qmap2, gnorm_scale, lr, beta1, beta2, beta3, alpha, eps, weight_decay, "
     "bias_correction1, bias_correction2, dampening, nesterov, step, max_unorm, block_wise) -> True once "
     "torch.ops.bitsandbytes.optimizer_update ran on the handle's tensors and each parameter's .grad; False (and "
     "nothing done) where a parameter has no gradient."},
    {"optimizer_grads", bnb::python::optimizer_grads, METH_VARARGS,
     "optimizer_grads(params) -> handle recording which parameters have a gradient now."},
    {"optimizer_grads_match", bnb::python::optimizer_grads_match, METH_O,
     "optimizer_grads_match(handle) -> whether the same parameters have a gradient as when the handle was made."},
    {nullptr, nullptr, 0, nullptr}};

}  // namespace

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "bitsandbytes custom operators", -1, methods};
  return PyModule_Create(&module);
}
