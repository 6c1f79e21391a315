// Split-KV: a query row's keys are cut into num_splits chunks run by separate CTAs/workgroups, each leaving a
// normalized partial output and its log-sum-exp; a combine pass merges them. Shared by the GPU backends.
#pragma once

#include <cmath>
#include <cstdint>

#include "host_device.h"

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

// The attention-sink factor 1 / (1 + exp(sink - lse)): +inf sink gives 0, -inf gives 1.
FMLA_HOST_DEVICE float attn_sink_factor(float sink, float lse) { return 1.f / (1.f + expf(sink - lse)); }

}  // namespace flash_mla
