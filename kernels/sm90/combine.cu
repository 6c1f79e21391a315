#include <cmath>

#include "attention_kernel.cuh"
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
  float max_lse = -INFINITY;
  for (int s = 0; s < workspace.num_splits; ++s)
    max_lse = fmaxf(max_lse, workspace.lse_accum[s * split_stride + accum_row]);
  float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
  float weight_sum = 0.f;
  if (max_lse != -INFINITY) {
    for (int s = 0; s < workspace.num_splits; ++s) {
      const float lse = workspace.lse_accum[s * split_stride + accum_row];
      if (lse == -INFINITY) continue;  // a split without keys: its partial is zeros
      const float w = expf(lse - max_lse);
      const float4 part =
          reinterpret_cast<const float4*>(workspace.out_accum + (s * split_stride + accum_row) * kHeadDim)[threadIdx.x];
      acc.x += w * part.x, acc.y += w * part.y, acc.z += w * part.z, acc.w += w * part.w;
      weight_sum += w;
    }
  }
  const bool empty = max_lse == -INFINITY;
  const float lse = empty ? INFINITY : max_lse + logf(weight_sum);
  float scale = empty ? 0.f : 1.f / weight_sum;
  if (outputs.attn_sink != nullptr && !empty) scale *= attn_sink_factor(outputs.attn_sink[head], lse);
  uint2 packed = make_uint2(pack_bf16x2(acc.x * scale, acc.y * scale), pack_bf16x2(acc.z * scale, acc.w * scale));
  reinterpret_cast<uint2*>(outputs.out + accum_row * kHeadDim)[threadIdx.x] = packed;
  if (threadIdx.x == 0 && outputs.lse != nullptr) {
    const int batch = row / outputs.seq_q, s = row % outputs.seq_q;
    outputs.lse[(int64_t(batch) * num_heads + head) * outputs.seq_q + s] = lse;
  }
}

}  // namespace

void launch_combine(const SplitKVWorkspace& workspace, int num_rows, int num_heads, const AttentionOutputs& outputs,
                    cudaStream_t stream) {
  combine_kernel<<<dim3(num_rows, num_heads), kCombineThreads, 0, stream>>>(workspace, num_rows, num_heads, outputs);
}

}  // namespace flash_mla::sm90
