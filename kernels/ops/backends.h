// Routes a call to the backend of its device. The GPU backend (sm90 under a CUDA torch, gfx942 under a ROCm
// torch) is compiled in only when setup.py built it, and then registered for the CUDA dispatch key.
#pragma once

#include <ATen/ATen.h>

#include "../common/params.h"
#include "../cpu/cpu_kernels.h"

namespace flash_mla::ops {

inline void run_sparse_attn_decode(const SparseDecodeParams& params, const at::Device& device) {
  TORCH_CHECK(device.is_cpu(), "flash_mla.sparse_attn_decode: this build has no kernels for ", device);
  cpu::sparse_attn_decode(params);
}

inline void run_decode(const DecodeParams& params, const at::Device& device) {
  TORCH_CHECK(device.is_cpu(), "flash_mla.decode: this build has no kernels for ", device);
  cpu::decode(params);
}

}  // namespace flash_mla::ops
