// The test-only emulation extension: the flash_mla schemas as torch.ops.flash_mla_gfx942_emulated, implemented by
// the same binding layer (kernels/ops) with the gfx942 kernels run under emulation (include/hip/hip_runtime.h) on CPU
// tensors. Built by tests/gfx942_emulation.py; never part of the wheel.
#include <torch/library.h>

#include "../../ops/library.h"

TORCH_LIBRARY(flash_mla_gfx942_emulated, m) { flash_mla::ops::define_ops(m); }
TORCH_LIBRARY_IMPL(flash_mla_gfx942_emulated, CPU, m) { flash_mla::ops::register_kernels(m); }
TORCH_LIBRARY_IMPL(flash_mla_gfx942_emulated, Meta, m) { flash_mla::ops::register_meta_kernels(m); }
TORCH_LIBRARY_IMPL(flash_mla_gfx942_emulated, Autograd, m) { flash_mla::ops::register_no_autograd(m); }
