// The test-only emulation extension: the flash_mla schemas as torch.ops.flash_mla_gfx942_emulated, implemented by
// the same binding layer (kernels/ops) with the gfx942 kernels run under emulation (include/hip/hip_runtime.h) on CPU
// tensors. Built by tests/gfx942_emulation.py; never part of the wheel.
#include <torch/library.h>

#include "../../ops/ops.h"
#include "../../ops/schemas.h"

TORCH_LIBRARY(flash_mla_gfx942_emulated, m) {
  m.def(flash_mla::ops::kSparseAttnDecodeSchema);
  m.def(flash_mla::ops::kDecodeSchema);
}

TORCH_LIBRARY_IMPL(flash_mla_gfx942_emulated, CPU, m) {
  m.impl("sparse_attn_decode", &flash_mla::ops::sparse_attn_decode);
  m.impl("decode", &flash_mla::ops::decode);
}
