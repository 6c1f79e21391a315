// Launching the attention kernel (and the combine pass when it splits) for one key source.
#pragma once

#include <hip/hip_runtime.h>

#include <stdexcept>
#include <string>

#include "attention_kernel.h"
#include "combine.h"

namespace flash_mla::gfx942 {

inline void check_hip(hipError_t status, const char* what) {
  if (status != hipSuccess)
    throw std::runtime_error(std::string("flash_mla gfx942: ") + what + ": " + hipGetErrorString(status));
}

template <class Keys>
void launch_attention(const typename Keys::Params& params, const AttentionShape& shape, const AttentionOutputs& outputs,
                      const SplitKVWorkspace& workspace, hipStream_t stream) {
  const dim3 grid(shape.num_rows, unsigned(num_head_groups(shape.num_heads)), workspace.num_splits);
  hipLaunchKernelGGL(attention_kernel<Keys>, grid, dim3(kThreads), 0, stream, params, shape, outputs, workspace);
  check_hip(hipGetLastError(), "launching the attention kernel");
  if (workspace.num_splits > 1) {
    launch_combine(workspace, shape.num_rows, shape.num_heads, outputs, stream);
    check_hip(hipGetLastError(), "launching the combine kernel");
  }
}

// The kernel for the call's fp8 format.
template <template <Fp8Format> class Keys, class Params>
void launch_attention_for_format(Fp8Format format, const Params& params, const AttentionShape& shape,
                                 const AttentionOutputs& outputs, const SplitKVWorkspace& workspace,
                                 hipStream_t stream) {
  if (format == Fp8Format::kE4M3FN) {
    launch_attention<Keys<Fp8Format::kE4M3FN>>(params, shape, outputs, workspace, stream);
  } else {
    launch_attention<Keys<Fp8Format::kE4M3FNUZ>>(params, shape, outputs, workspace, stream);
  }
}

}  // namespace flash_mla::gfx942
