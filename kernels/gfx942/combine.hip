// The combine kernel: merges the split-KV partials of the attention kernel into the final output and lse.
#include <hip/hip_runtime.h>

#include "../common/kv_cache.h"
#include "combine.h"
#include "primitives.h"

namespace flash_mla::gfx942 {
namespace {

constexpr int kCombineThreads = kHeadDim / 4;  // 4 output columns each

__global__ void __launch_bounds__(kCombineThreads)
    combine_kernel(const SplitKVWorkspace workspace, int num_rows, int num_heads, const AttentionOutputs outputs) {
  const int row = workgroup_index_x(), head = workgroup_index_y(), column = 4 * thread_index();
  const int64_t split_stride = int64_t(num_rows) * num_heads;
  const int64_t accum_row = int64_t(row) * num_heads + head;
  const SplitMerge merge(workspace, split_stride, accum_row, outputs.attn_sink, head);
  floatx4 acc = {0.f, 0.f, 0.f, 0.f};
  for (int s = 0; s < workspace.num_splits; ++s) {
    const float w = merge.weight(workspace.lse_accum[s * split_stride + accum_row]);
    if (w == 0.f) continue;  // a split without keys: its partial is zeros
    acc += w * load_unaligned<floatx4>(workspace.out_accum + (s * split_stride + accum_row) * kHeadDim + column);
  }
  acc *= merge.output_scale;
  store_unaligned(outputs.out + accum_row * kHeadDim + column,
                  u32x2{pack_bf16x2(acc[0], acc[1]), pack_bf16x2(acc[2], acc[3])});
  if (column == 0 && outputs.lse != nullptr) outputs.lse[outputs.lse_offset(row, head, num_heads)] = merge.lse;
}

}  // namespace

void launch_combine(const SplitKVWorkspace& workspace, int num_rows, int num_heads, const AttentionOutputs& outputs,
                    hipStream_t stream) {
  hipLaunchKernelGGL(combine_kernel, dim3(num_rows, num_heads), dim3(kCombineThreads), 0, stream, workspace, num_rows,
                     num_heads, outputs);
}

}  // namespace flash_mla::gfx942
