// Merges the split-KV partials of the attention kernel (SplitMerge, shared with sm90): per (row, head), the
// partials weighted by exp(lse_s - max lse), the bf16 output (with the attention sink) and the final lse.
#pragma once

#include "../common/params.h"
#include "../gpu/attention.h"
#include "../gpu/split_kv.h"
#include "gfx942_kernels.h"

namespace flash_mla::gfx942 {

void launch_combine(const SplitKVWorkspace& workspace, int num_rows, int num_heads, const AttentionOutputs& outputs,
                    hipStream_t stream);

}  // namespace flash_mla::gfx942
