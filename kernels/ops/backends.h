// Runs a call on the backend of its device: the backend plans it from shapes and the device, this layer allocates
// the workspace the plan asks for and hands over the device's current stream. Device-generic torch interfaces only
// (c10 streams), so the same file builds under a CUDA and a ROCm torch without hipify rewriting it.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include "../common/backend.h"

namespace flash_mla::ops {

// The backend that runs tensors on `device` (kernels/ops/backends.cpp; the test-only emulation build defines its
// own). Raises NotImplementedError when the build has none for the device.
const Backend& backend_for(const at::Device& device);

// The device's index as the backends take it (a device without one is device 0 of its type).
inline int device_index(const at::Device& device) { return device.has_index() ? device.index() : 0; }

// The native handle of the device's current stream (what the GPU runtime calls a stream); null on the CPU.
inline void* current_stream(const at::Device& device) {
  if (device.is_cpu()) return nullptr;
  return c10::impl::getDeviceGuardImpl(device.type())->getStream(device).native_handle();
}

// q ([b, s_q, h, 512] or [B, H, 512] bf16) as the kernels read it, through its strides: in place when each head's
// 512 values are contiguous and every head row starts `alignment`-byte aligned, else from a contiguous aligned copy.
// `owner` keeps whichever tensor the rows point into alive.
inline QueryRows query_rows(const at::Tensor& q, int alignment, at::Tensor& owner) {
  auto aligned = [&](const at::Tensor& t) {
    bool ok = t.stride(-1) == 1 && reinterpret_cast<uintptr_t>(t.data_ptr()) % alignment == 0;
    for (int64_t d = 0; d + 1 < t.dim(); ++d) ok = ok && (t.size(d) <= 1 || t.stride(d) * 2 % alignment == 0);
    return ok;
  };
  owner = q;
  if (!aligned(owner)) owner = q.contiguous();
  if (!aligned(owner)) owner = owner.clone();  // a contiguous tensor at a misaligned offset
  QueryRows rows;
  rows.data = static_cast<const uint16_t*>(owner.data_ptr());
  const bool sparse = owner.dim() == 4;  // [b, s_q, h, 512]; decode's [B, H, 512] has one token a row
  rows.seq_q = sparse ? int(owner.size(1)) : 1;
  rows.batch_stride = owner.stride(0);
  rows.seq_stride = sparse ? owner.stride(1) : 0;
  rows.head_stride = owner.stride(sparse ? 2 : 1);
  return rows;
}

// An uninitialized byte buffer on the device (workspace.cpp).
at::Tensor allocate_workspace(int64_t bytes, const at::Device& device);

// Plans the call on the backend, allocates its workspace, runs it on the device's current stream.
template <class Params>
void run_planned(const Backend& backend, Plan (*plan)(const Params&, int),
                 void (*run)(const Params&, const Plan&, void*, void*), const Params& params,
                 const at::Device& device) {
  const Plan call = plan(params, device_index(device));
  const at::Tensor workspace =
      call.workspace_bytes > 0 ? allocate_workspace(call.workspace_bytes, device) : at::Tensor();
  run(params, call, workspace.defined() ? workspace.data_ptr() : nullptr, current_stream(device));
}

}  // namespace flash_mla::ops
