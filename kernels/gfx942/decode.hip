// decode on gfx942: the attention kernel over CSR token ranges of separate nope / rope / fp32-scale tensors.
#include <hip/hip_runtime.h>

#include "gfx942_kernels.h"
#include "launch.h"

namespace flash_mla::gfx942 {

void decode(const DecodeParams& params, const SplitKVWorkspace& workspace, hipStream_t stream) {
  const AttentionShape shape{params.q, params.batch, params.num_heads, params.sm_scale};
  const AttentionOutputs outputs{params.out, nullptr, nullptr, 1};
  launch_attention_for_format<CsrKeySource>(params.format, params, shape, outputs, workspace, stream);
}

}  // namespace flash_mla::gfx942
