// sparse_attn_decode on sm90: the attention kernel over the paged MODEL1 cache (both layouts, both fp8 formats).
#include <cstdint>

#include "launch.cuh"
#include "sm90_kernels.h"

namespace flash_mla::sm90 {

void sparse_attn_decode(const SparseDecodeParams& params, const SplitKVWorkspace& workspace, cudaStream_t stream) {
  // 8-byte copies need every token part 8-byte aligned: the cache base and the block stride.
  bool aligned = true;
  for (int s = 0; s < params.num_sources; ++s) {
    const PagedKVCache& cache = params.sources[s].cache;
    aligned &= reinterpret_cast<uintptr_t>(cache.data) % 8 == 0 && cache.block_stride % 8 == 0;
  }
  const AttentionShape shape = attention_shape(params);
  const AttentionOutputs outputs = attention_outputs(params);
  if (aligned) {
    launch_attention<SparseKeys<true>>(params, shape, outputs, workspace, stream);
  } else {
    launch_attention<SparseKeys<false>>(params, shape, outputs, workspace, stream);
  }
}

}  // namespace flash_mla::sm90
