// The backend table of the extension: the CPU backend, and the GPU backends setup.py built for this torch, each
// asked whether it runs on a device. A ROCm torch dispatches HIP devices under the CUDA device type, so "cuda"
// devices are offered to every GPU backend of the build.
#include "backends.h"

#include <array>
#include <atomic>
#include <string>
#include <vector>

namespace flash_mla::ops {
namespace {

const std::vector<const Backend*>& gpu_backends() {
  static const std::vector<const Backend*> backends = {
#if defined(FLASH_MLA_WITH_SM90)
      &sm90_backend(),
#endif
#if defined(FLASH_MLA_WITH_GFX942)
      &gfx942_backend(),
#endif
  };
  return backends;
}

const Backend* find_gpu_backend(int device) {
  for (const Backend* backend : gpu_backends())
    if (backend->supports(device)) return backend;
  return nullptr;
}

}  // namespace

const Backend& backend_for(const at::Device& device) {
  if (device.is_cpu()) return cpu_backend();
  const Backend* backend = nullptr;
  if (device.is_cuda()) {
    // The answer per device never changes: asked once (devices 0..63).
    static std::array<std::atomic<const Backend*>, 64> known{};
    const int index = device_index(device);
    backend = index < int(known.size()) ? known[index].load(std::memory_order_acquire) : nullptr;
    if (backend == nullptr) {
      backend = find_gpu_backend(index);
      if (backend != nullptr && index < int(known.size())) known[index].store(backend, std::memory_order_release);
    }
  }
  if (backend == nullptr) {
    std::string built = "cpu";
    for (const Backend* gpu : gpu_backends()) built += std::string(", ") + gpu->name;
    TORCH_CHECK_NOT_IMPLEMENTED(false, "flash_mla: this build has no kernels that run on ", device,
                                " (its backends: ", built, ")");
  }
  return *backend;
}

}  // namespace flash_mla::ops
