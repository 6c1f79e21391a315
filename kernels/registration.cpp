// The one registration file: the flash_mla op schemas and their CPU (and, when built, GPU) implementations.
// ROCm torch dispatches HIP devices under the CUDA key, so one CUDA registration serves both GPU backends.
#include <Python.h>
#include <torch/library.h>

#include "ops/ops.h"
#include "ops/schemas.h"

// `import flash_mla_rocm._C` loads this library, which runs the registrations below.
extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}

TORCH_LIBRARY(flash_mla, m) {
  m.def(flash_mla::ops::kSparseAttnDecodeSchema);
  m.def(flash_mla::ops::kDecodeSchema);
}

TORCH_LIBRARY_IMPL(flash_mla, CPU, m) {
  m.impl("sparse_attn_decode", &flash_mla::ops::sparse_attn_decode);
  m.impl("decode", &flash_mla::ops::decode);
}

#if defined(FLASH_MLA_WITH_GPU)
TORCH_LIBRARY_IMPL(flash_mla, CUDA, m) {
  m.impl("sparse_attn_decode", &flash_mla::ops::sparse_attn_decode);
  m.impl("decode", &flash_mla::ops::decode);
}
#endif
