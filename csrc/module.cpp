// The bitsandbytes._C extension module. It holds no Python functions: importing it loads the
// shared library, whose static initialisers register the torch custom ops.
#include <Python.h>

extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", "bitsandbytes custom operators", -1, nullptr};
  return PyModule_Create(&module);
}
