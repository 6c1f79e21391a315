#include "library.h"

#include <torch/csrc/autograd/autograd_not_implemented_fallback.h>

#include <string>

#include "backends.h"
#include "contract.h"
#include "ops.h"

namespace flash_mla::ops {
namespace {

// The backend that would run tensors on `device` ("none" when the build has none), for flash_mla_rocm.info().
std::string backend_name(c10::Device device) {
  try {
    return backend_for(device).name;
  } catch (const c10::NotImplementedError&) {
    return "none";
  }
}

}  // namespace

void define_ops(torch::Library& library) {
  library.def(kSparseAttnDecodeSchema);
  library.def(kDecodeSchema);
  library.def("_backend_name(Device device) -> str", &backend_name);
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
