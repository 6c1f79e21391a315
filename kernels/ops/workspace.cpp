// The workspace a backend's plan asks for, out of line so that backends.h stays free of ATen's operator headers.
#include <ATen/ops/empty.h>

#include "backends.h"

namespace flash_mla::ops {

at::Tensor allocate_workspace(int64_t bytes, const at::Device& device) {
  return at::empty({bytes}, at::TensorOptions().device(device).dtype(at::kByte));
}

}  // namespace flash_mla::ops
