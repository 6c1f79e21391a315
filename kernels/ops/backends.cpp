// The backend table of the extension: the CPU backend always, and the GPU backend setup.py built for this torch.
// A ROCm torch dispatches HIP devices under the CUDA device type, so "cuda" devices run sm90 or gfx942.
#include "backends.h"

namespace flash_mla::ops {

const Backend& backend_for(const at::Device& device) {
  if (device.is_cpu()) return cpu_backend();
#if defined(FLASH_MLA_WITH_SM90)
  if (device.is_cuda()) return sm90_backend();
#elif defined(FLASH_MLA_WITH_GFX942)
  if (device.is_cuda()) return gfx942_backend();
#endif
  TORCH_CHECK(false, "flash_mla: this build has no kernels for ", device);
}

}  // namespace flash_mla::ops
