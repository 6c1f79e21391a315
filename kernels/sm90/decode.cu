// decode on sm90: the attention kernel over CSR token ranges of separate nope / rope / fp32-scale tensors.
#include <cstdint>

#include "launch.cuh"
#include "sm90_kernels.h"

namespace flash_mla::sm90 {

void decode(const DecodeParams& params, const SplitKVWorkspace& workspace, cudaStream_t stream) {
  const bool aligned = reinterpret_cast<uintptr_t>(params.kv_nope) % 8 == 0 &&
                       reinterpret_cast<uintptr_t>(params.kv_rope) % 8 == 0 &&
                       reinterpret_cast<uintptr_t>(params.kv_scales) % 4 == 0;
  const AttentionShape shape = attention_shape(params);
  const AttentionOutputs outputs = attention_outputs(params);
  if (aligned) {
    launch_attention<CsrKeys<true>>(params, shape, outputs, workspace, stream);
  } else {
    launch_attention<CsrKeys<false>>(params, shape, outputs, workspace, stream);
  }
}

}  // namespace flash_mla::sm90
