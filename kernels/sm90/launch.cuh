// Launching the attention kernel (and the combine pass when it splits) for one key source.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "attention_kernel.cuh"
#include "combine.cuh"

namespace flash_mla::sm90 {

inline void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess)
    throw std::runtime_error(std::string("flash_mla sm90: ") + what + ": " + cudaGetErrorString(status));
}

template <class Keys, bool kShare>
void launch_attention_kernel(const typename Keys::Params& params, const AttentionShape& shape,
                             const AttentionOutputs& outputs, const SplitKVWorkspace& workspace, cudaStream_t stream) {
  // The shared-memory limit is an attribute of the kernel on each device: set once per device (a host call that
  // costs microseconds), for devices 0..63 (beyond, on every launch).
  static std::atomic<uint64_t> configured_devices{0};
  int device = 0;
  check_cuda(cudaGetDevice(&device), "reading the current device");
  const uint64_t device_bit = device < 64 ? uint64_t(1) << device : 0;
  if ((configured_devices.load(std::memory_order_acquire) & device_bit) == 0) {  // bit 0: device >= 64
    check_cuda(
        cudaFuncSetAttribute(attention_kernel<Keys, kShare>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSharedBytes),
        "configuring the attention kernel");
    configured_devices.fetch_or(device_bit, std::memory_order_release);
  }
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(shape.num_rows, num_head_groups(shape.num_heads), workspace.num_splits);
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = kSharedBytes;
  config.stream = stream;
  cudaLaunchAttribute cluster;
  cluster.id = cudaLaunchAttributeClusterDimension;
  cluster.val.clusterDim.x = 1;
  cluster.val.clusterDim.y = kShare ? 2 : 1;
  cluster.val.clusterDim.z = 1;
  config.attrs = &cluster;
  config.numAttrs = 1;
  check_cuda(cudaLaunchKernelEx(&config, attention_kernel<Keys, kShare>, params, shape, outputs, workspace),
             "launching the attention kernel");
}

// 2 head groups (65..128 heads) share dequantized keys across a cluster of 2 CTAs; other head counts run alone.
template <class Keys>
void launch_attention(const typename Keys::Params& params, const AttentionShape& shape, const AttentionOutputs& outputs,
                      const SplitKVWorkspace& workspace, cudaStream_t stream) {
  if (num_head_groups(shape.num_heads) == 2) {
    launch_attention_kernel<Keys, true>(params, shape, outputs, workspace, stream);
  } else {
    launch_attention_kernel<Keys, false>(params, shape, outputs, workspace, stream);
  }
  if (workspace.num_splits > 1) {
    launch_combine(workspace, shape.num_rows, shape.num_heads, outputs, stream);
    check_cuda(cudaGetLastError(), "launching the combine kernel");
  }
}

}  // namespace flash_mla::sm90
