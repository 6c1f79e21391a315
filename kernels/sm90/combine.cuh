// Merges the split-KV partials of the attention kernel: per (row, head), weights exp(lse_s - max lse), writes
// the bf16 output (with the attention sink) and the final lse.
#pragma once

#include <cuda_runtime.h>

#include "../common/kv_cache.h"
#include "../common/params.h"
#include "../gpu/attention.h"
#include "../gpu/split_kv.h"

namespace flash_mla::sm90 {

void launch_combine(const SplitKVWorkspace& workspace, int num_rows, int num_heads, const AttentionOutputs& outputs,
                    cudaStream_t stream);

}  // namespace flash_mla::sm90
