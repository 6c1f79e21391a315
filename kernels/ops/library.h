// What a registration file needs: both ops defined (their schemas), their kernels for the CPU and GPU dispatch
// keys, their meta kernels, and their autograd behaviour (none: they are inference ops; a backward through them
// raises). For the flash_mla library, or a test build's own namespace with the same schemas.
#pragma once

#include <torch/library.h>

namespace flash_mla::ops {

void define_ops(torch::Library& library);        // and _backend_name(device), the backend a device's tensors would use
void register_kernels(torch::Library& library);  // the real ops, for the CPU or the CUDA key
void register_meta_kernels(torch::Library& library);
void register_no_autograd(torch::Library& library);

}  // namespace flash_mla::ops
