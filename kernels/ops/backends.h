// Runs a call on the backend of its device: the backend plans it from shapes and the device, this layer allocates
// the workspace the plan asks for and hands over the device's current stream. Device-generic torch interfaces only
// (c10 streams), so the same file builds under a CUDA and a ROCm torch without hipify rewriting it.
#pragma once

#include <ATen/ATen.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include "../common/backend.h"

namespace flash_mla::ops {

// The backend that runs tensors on `device` (kernels/ops/backends.cpp; the test-only emulation build defines its
// own). Raises NotImplementedError when the build has none for the device.
const Backend& backend_for(const at::Device& device);

// The native handle of the device's current stream (what the GPU runtime calls a stream); null on the CPU.
inline void* current_stream(const at::Device& device) {
  if (device.is_cpu()) return nullptr;
  return c10::impl::getDeviceGuardImpl(device.type())->getStream(device).native_handle();
}

// t contiguous, and its data aligned to `alignment` bytes: t itself or a copy.
inline at::Tensor contiguous_aligned(const at::Tensor& t, int alignment) {
  at::Tensor c = t.contiguous();
  return reinterpret_cast<uintptr_t>(c.data_ptr()) % alignment == 0 ? c : c.clone();
}

// Plans the call on the backend, allocates its workspace, runs it on the device's current stream.
template <class Params>
void run_planned(const Backend& backend, Plan (*plan)(const Params&, int),
                 void (*run)(const Params&, const Plan&, void*, void*), const Params& params,
                 const at::Device& device) {
  const Plan call = plan(params, device.has_index() ? device.index() : 0);
  at::Tensor workspace;
  if (call.workspace_bytes > 0)
    workspace = at::empty({call.workspace_bytes}, at::TensorOptions().device(device).dtype(at::kByte));
  run(params, call, workspace.defined() ? workspace.data_ptr() : nullptr, current_stream(device));
}

}  // namespace flash_mla::ops
