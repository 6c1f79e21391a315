// sparse_attn_decode on gfx942: the attention kernel over the paged MODEL1 cache (both layouts, both fp8 formats).
#include <hip/hip_runtime.h>

#include "gfx942_kernels.h"
#include "launch.h"

namespace flash_mla::gfx942 {

void sparse_attn_decode(const SparseDecodeParams& params, const SplitKVWorkspace& workspace, hipStream_t stream) {
  const AttentionShape shape = attention_shape(params);
  const AttentionOutputs outputs = attention_outputs(params);
  launch_attention_for_format<SparseKeys>(params.sources[0].cache.format, params, shape, outputs, workspace,
                                               stream);
}

}  // namespace flash_mla::gfx942
