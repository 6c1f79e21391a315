// Split-KV: a query row's keys are cut into num_splits chunks run by separate CTAs/workgroups, each leaving a
// normalized partial output and its log-sum-exp; a combine pass merges them. Shared by the GPU backends.
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"
#include "params.h"

namespace flash_mla {

// Partial results of the splits: out_accum [num_splits, rows, heads, 512], lse_accum [num_splits, rows, heads]
// (natural log, -inf for a split without keys). Unused (null) when num_splits == 1.
struct SplitKVWorkspace {
  int num_splits = 1;
  float* out_accum = nullptr;
  float* lse_accum = nullptr;
};

// How many splits a launch of work_items (query rows x head groups) CTAs over at most max_keys keys each should
// use on num_sms multiprocessors. Shapes only, never tensor values: the choice is fixed when a CUDA/HIP graph is
// captured. Splitting fills the machine for small batches; it also evens out a last partial wave, which is worth
// the extra pass of partial outputs only while there are few waves.
inline int choose_num_splits(int64_t work_items, int64_t max_keys, int num_sms, int key_tile) {
  const int64_t max_splits = (max_keys + key_tile - 1) / key_tile;  // at least one key tile per split
  if (work_items <= 0 || max_splits <= 1) return 1;
  int best = 1;
  double best_cost = 0;
  for (int splits = 1; splits <= 64 && splits <= max_splits; ++splits) {
    const int64_t ctas = work_items * splits;
    const int64_t waves = (ctas + num_sms - 1) / num_sms;
    // Time ~ waves x (keys per split + a fixed per-CTA cost of about two key tiles), plus a combine pass.
    const double per_cta = double(max_keys) / splits + 2.0 * key_tile;
    const double cost = double(waves) * per_cta + (splits > 1 ? 1.0 * key_tile : 0.0);
    if (splits == 1 || cost < best_cost * 0.97) {
      best = splits;
      best_cost = cost;
    }
  }
  return best;
}

// Which of a row's positions [0, total) split s covers: equal chunks of whole key tiles.
struct PositionRange {
  int begin;
  int end;
};

FMLA_HOST_DEVICE PositionRange split_positions(int total, int split, int num_splits, int key_tile) {
  const int tiles = (total + key_tile - 1) / key_tile;
  const int tiles_per_split = (tiles + num_splits - 1) / num_splits;
  const int begin = split * tiles_per_split * key_tile;
  const int end = begin + tiles_per_split * key_tile;
  return {begin < total ? begin : total, end < total ? end : total};
}

// logf that stays inline in HIP device code (HIP's logf is a device-library call).
FMLA_HOST_DEVICE float log_f32(float x) {
#if defined(__HIP_DEVICE_COMPILE__)
  return __builtin_logf(x);
#else
  return logf(x);
#endif
}

// The attention-sink factor 1 / (1 + exp(sink - lse)): +inf sink gives 0, -inf gives 1.
FMLA_HOST_DEVICE float attn_sink_factor(float sink, float lse) { return 1.f / (1.f + expf(sink - lse)); }

// The merge of one (row, head)'s split partials: the weight max and sum of exp(lse_s - max), the merged lse
// (+inf when no split had keys) and the factor that turns the weighted sum of partials into the output (1 / sum,
// times the attention sink).
struct SplitMerge {
  float max_lse;
  float lse;
  float output_scale;

  FMLA_HOST_DEVICE SplitMerge(const SplitKVWorkspace& workspace, int64_t split_stride, int64_t accum_row,
                              const float* attn_sink, int head) {
    max_lse = -INFINITY;
    for (int s = 0; s < workspace.num_splits; ++s)
      max_lse = fmaxf(max_lse, workspace.lse_accum[s * split_stride + accum_row]);
    float weight_sum = 0.f;
    if (max_lse != -INFINITY)
      for (int s = 0; s < workspace.num_splits; ++s)
        weight_sum += weight(workspace.lse_accum[s * split_stride + accum_row]);
    const bool empty = max_lse == -INFINITY;
    lse = empty ? INFINITY : max_lse + log_f32(weight_sum);
    output_scale = empty ? 0.f : 1.f / weight_sum;
    if (attn_sink != nullptr && !empty) output_scale *= attn_sink_factor(attn_sink[head], lse);
  }

  // A split's weight; 0 for a split without keys (lse -inf, its partial is zeros).
  FMLA_HOST_DEVICE float weight(float split_lse) const {
    return split_lse == -INFINITY ? 0.f : expf(split_lse - max_lse);
  }
};

}  // namespace flash_mla
