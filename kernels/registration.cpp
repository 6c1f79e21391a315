// The one registration file: the flash_mla ops (kernels/ops/library.h), their CPU kernels, their GPU kernels when
// built, their meta kernels and their autograd behaviour. ROCm torch dispatches HIP devices under the CUDA key, so
// one CUDA registration serves both GPU backends.
#include <Python.h>
#include <torch/library.h>

#include "ops/library.h"

// `import flash_mla_rocm._C` loads this library, which runs the registrations below.
extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}

TORCH_LIBRARY(flash_mla, m) { flash_mla::ops::define_ops(m); }
TORCH_LIBRARY_IMPL(flash_mla, CPU, m) { flash_mla::ops::register_kernels(m); }
#if defined(FLASH_MLA_WITH_GPU)
TORCH_LIBRARY_IMPL(flash_mla, CUDA, m) { flash_mla::ops::register_kernels(m); }
#endif
TORCH_LIBRARY_IMPL(flash_mla, Meta, m) { flash_mla::ops::register_meta_kernels(m); }
TORCH_LIBRARY_IMPL(flash_mla, Autograd, m) { flash_mla::ops::register_no_autograd(m); }
