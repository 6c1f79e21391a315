// Split-KV: a query row's keys are cut into num_splits chunks run by separate CTAs/workgroups, each leaving a
// normalized partial output and its log-sum-exp; a combine pass merges them. Shared by the GPU backends.
#pragma once

#include <cmath>
#include <cstdint>

#include "../common/backend.h"
#include "../common/host_device.h"
#include "../common/params.h"

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

// Bytes of the split partials of rows x heads outputs: out_accum, then lse_accum.
inline int64_t split_workspace_bytes(int num_splits, int64_t rows, int num_heads) {
  return int64_t(num_splits) * rows * num_heads * (kHeadDim + 1) * int64_t(sizeof(float));
}

// CTAs/workgroups that share a query row's heads, heads_per_workgroup each.
constexpr int64_t head_groups(int64_t num_heads, int heads_per_workgroup) {
  return (num_heads + heads_per_workgroup - 1) / heads_per_workgroup;
}

// The plan of a GPU attention kernel that runs heads_per_workgroup heads of a row per CTA/workgroup over key tiles
// of key_tile keys, on a device of compute_units SMs/CUs: the split count and its partials' workspace.
inline Plan plan_split_kv(int64_t rows, int num_heads, int64_t max_keys, int compute_units, int heads_per_workgroup,
                          int key_tile) {
  Plan plan;
  plan.num_splits =
      choose_num_splits(rows * head_groups(num_heads, heads_per_workgroup), max_keys, compute_units, key_tile);
  if (plan.num_splits > 1) plan.workspace_bytes = split_workspace_bytes(plan.num_splits, rows, num_heads);
  return plan;
}

// Both ops' query rows and the keys a row may have: the sparse op's rows have at most the top-k of both caches;
// decode's ranges are device data, so it plans for the average row, T / B tokens.
inline int64_t query_rows(const SparseDecodeParams& p) { return int64_t(p.batch) * p.seq_q; }
inline int64_t query_rows(const DecodeParams& p) { return p.batch; }
inline int64_t planned_keys(const SparseDecodeParams& p) {
  int64_t keys = 0;
  for (int s = 0; s < p.num_sources; ++s) keys += p.sources[s].topk;
  return keys;
}
inline int64_t planned_keys(const DecodeParams& p) { return p.batch > 0 ? (p.num_tokens + p.batch - 1) / p.batch : 0; }

template <class Params>
Plan plan_split_kv(const Params& p, int compute_units, int heads_per_workgroup, int key_tile) {
  return plan_split_kv(query_rows(p), p.num_heads, planned_keys(p), compute_units, heads_per_workgroup, key_tile);
}

// The split partials in a plan's workspace (unused, null, when it does not split).
template <class Params>
SplitKVWorkspace split_workspace(const Params& p, const Plan& plan, void* workspace) {
  SplitKVWorkspace splits;
  splits.num_splits = plan.num_splits;
  if (plan.num_splits > 1) {
    splits.out_accum = static_cast<float*>(workspace);
    splits.lse_accum = splits.out_accum + int64_t(plan.num_splits) * query_rows(p) * p.num_heads * kHeadDim;
  }
  return splits;
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
