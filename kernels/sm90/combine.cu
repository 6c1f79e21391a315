#include "../common/kv_cache.h"
#include "combine.cuh"
#include "primitives.cuh"

namespace flash_mla::sm90 {
namespace {

constexpr int kCombineThreads = kHeadDim / 4;  // one float4 of the output row each

__global__ void __launch_bounds__(kCombineThreads)
    combine_kernel(const SplitKVWorkspace workspace, int num_rows, int num_heads, const AttentionOutputs outputs) {
  const int row = blockIdx.x, head = blockIdx.y;
  const int64_t split_stride = int64_t(num_rows) * num_heads;
  const int64_t accum_row = int64_t(row) * num_heads + head;
  const SplitMerge merge(workspace, split_stride, accum_row, outputs.attn_sink, head);
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  for (int s = 0; s < workspace.num_splits; ++s) {
    const float w = merge.weight(workspace.lse_accum[s * split_stride + accum_row]);
    if (w == 0.f) continue;  // a split without keys: its partial is zeros
    const float4 part =
        reinterpret_cast<const float4*>(workspace.out_accum + (s * split_stride + accum_row) * kHeadDim)[threadIdx.x];
    acc.x += w * part.x, acc.y += w * part.y, acc.z += w * part.z, acc.w += w * part.w;
  }
  const float scale = merge.output_scale, lse = merge.lse;
  uint2 packed = make_uint2(pack_bf16x2(acc.x * scale, acc.y * scale), pack_bf16x2(acc.z * scale, acc.w * scale));
  reinterpret_cast<uint2*>(outputs.out + accum_row * kHeadDim)[threadIdx.x] = packed;
  if (threadIdx.x == 0 && outputs.lse != nullptr) outputs.lse[outputs.lse_offset(row, head, num_heads)] = lse;
}

}  // namespace

void launch_combine(const SplitKVWorkspace& workspace, int num_rows, int num_heads, const AttentionOutputs& outputs,
                    cudaStream_t stream) {
  combine_kernel<<<dim3(num_rows, num_heads), kCombineThreads, 0, stream>>>(workspace, num_rows, num_heads, outputs);
}

}  // namespace flash_mla::sm90
