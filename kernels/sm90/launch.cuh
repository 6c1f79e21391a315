// Launching the attention kernel (and the combine pass when it splits) for one key source.
#pragma once

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "attention_kernel.cuh"
#include "combine.cuh"

namespace flash_mla::sm90 {

inline void check_cuda(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string("flash_mla sm90: ") + what + ": " + cudaGetErrorString(status));
}

template <class Keys>
void launch_attention(const typename Keys::Params& params, const AttentionShape& shape,
                      const AttentionOutputs& outputs, const SplitKVWorkspace& workspace, cudaStream_t stream) {
  static const cudaError_t configured = cudaFuncSetAttribute(
      attention_kernel<Keys>, cudaFuncAttributeMaxDynamicSharedMemorySize, kSharedBytes);
  check_cuda(configured, "configuring the attention kernel");
  const dim3 grid(shape.num_rows, (shape.num_heads + kHeadsPerCta - 1) / kHeadsPerCta, workspace.num_splits);
  attention_kernel<Keys><<<grid, kThreads, kSharedBytes, stream>>>(params, shape, outputs, workspace);
  check_cuda(cudaGetLastError(), "launching the attention kernel");
  if (workspace.num_splits > 1) {
    launch_combine(workspace, shape.num_rows, shape.num_heads, outputs, stream);
    check_cuda(cudaGetLastError(), "launching the combine kernel");
  }
}

}  // namespace flash_mla::sm90
