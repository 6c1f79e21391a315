// Runs a call on the backend of its device: the backend plans the split count from shapes and the device, this
// layer allocates the split workspace and hands over the device's current stream. Device-generic torch interfaces
// only (c10 streams), so the same file builds under a CUDA and a ROCm torch without hipify rewriting it.
#pragma once

#include <ATen/ATen.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include "../common/backend.h"

namespace flash_mla::ops {

// The backend that runs tensors on `device` (kernels/ops/backends.cpp; the test-only emulation build defines its
// own). Throws when the build has none.
const Backend& backend_for(const at::Device& device);

// The native handle of the device's current stream (what the GPU runtime calls a stream); null on the CPU.
inline void* current_stream(const at::Device& device) {
  if (device.is_cpu()) return nullptr;
  return c10::impl::getDeviceGuardImpl(device.type())->getStream(device).native_handle();
}

// Split-KV buffers for rows x heads outputs, sized from the backend's plan. Shapes only, so a call is the same set
// of allocations and launches whatever the tensors hold (CUDA/HIP-graph capturable).
struct SplitWorkspace {
  SplitKVWorkspace splits;
  at::Tensor out_accum, lse_accum;  // owners

  SplitWorkspace(const Backend& backend, int64_t rows, int64_t heads, int64_t max_keys, const at::Device& device) {
    splits.num_splits = backend.num_splits(rows, int(heads), max_keys, device.has_index() ? device.index() : 0);
    if (splits.num_splits > 1) {
      const auto options = at::TensorOptions().device(device).dtype(at::kFloat);
      out_accum = at::empty({splits.num_splits, rows, heads, kHeadDim}, options);
      lse_accum = at::empty({splits.num_splits, rows, heads}, options);
      splits.out_accum = out_accum.data_ptr<float>();
      splits.lse_accum = lse_accum.data_ptr<float>();
    }
  }
};

inline void run_sparse_attn_decode(const SparseDecodeParams& params, const at::Device& device) {
  const Backend& backend = backend_for(device);
  int64_t max_keys = 0;
  for (int s = 0; s < params.num_sources; ++s) max_keys += params.sources[s].topk;
  const SplitWorkspace workspace(backend, int64_t(params.batch) * params.seq_q, params.num_heads, max_keys, device);
  backend.sparse_attn_decode(params, workspace.splits, current_stream(device));
}

inline void run_decode(const DecodeParams& params, const at::Device& device) {
  const Backend& backend = backend_for(device);
  // Ranges are device data: plan for the average row, T / B tokens.
  const int64_t mean_keys = params.batch > 0 ? (params.num_tokens + params.batch - 1) / params.batch : 0;
  const SplitWorkspace workspace(backend, params.batch, params.num_heads, mean_keys, device);
  backend.decode(params, workspace.splits, current_stream(device));
}

}  // namespace flash_mla::ops
