// The backend table of the test-only emulation build: every call, on CPU tensors, runs the gfx942 backend under
// emulation (include/hip/hip_runtime.h).
#include "../../ops/backends.h"

namespace flash_mla::ops {

const Backend& backend_for(const at::Device&) { return gfx942_backend(); }

}  // namespace flash_mla::ops
