#include "library.h"

#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>

#include "contract.h"
#include "ops.h"

namespace flash_mla::ops {

void define_ops(torch::Library& library) {
  library.def(kSparseAttnDecodeSchema);
  library.def(kDecodeSchema);
}

void register_kernels(torch::Library& library) {
  library.impl("sparse_attn_decode", &sparse_attn_decode);
  library.impl("decode", &decode);
}

void register_meta_kernels(torch::Library& library) {
  library.impl("sparse_attn_decode", &sparse_attn_decode_meta);
  library.impl("decode", &decode_meta);
}

void register_no_autograd(torch::Library& library) {
  library.impl("sparse_attn_decode", torch::autograd::autogradNotImplementedFallback());
  library.impl("decode", torch::autograd::autogradNotImplementedFallback());
}

}  // namespace flash_mla::ops
