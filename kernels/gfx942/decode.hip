// decode on gfx942: the attention kernel over CSR token ranges of separate nope / rope / fp32-scale tensors.
#include <hip/hip_runtime.h>

#include "gfx942_kernels.h"
#include "launch.h"

namespace flash_mla::gfx942 {

void decode(const DecodeParams& params, const SplitKVWorkspace& workspace, hipStream_t stream) {
  const AttentionShape shape = attention_shape(params);
  const AttentionOutputs outputs = attention_outputs(params);
  launch_attention_for_format<CsrKeys>(params.format, params, shape, outputs, workspace, stream);
}

}  // namespace flash_mla::gfx942
