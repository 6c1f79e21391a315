// What the GPU attention kernels share: the view of either op as query rows of heads, where results go, and the
// end of a row (normalization, attention sink, the lse written out) for one split or the whole row.
#pragma once

#include <cmath>
#include <cstdint>

#include "../common/host_device.h"
#include "../common/numerics.h"
#include "../common/params.h"
#include "split_kv.h"

namespace flash_mla {

// Either op as query rows (sparse: b * s_q; decode: B) of num_heads heads each.
struct AttentionShape {
  QueryRows q;  // rows of num_heads heads of 512 bf16
  int num_rows;
  int num_heads;
  float sm_scale;
};

// Where the final results go. lse and attn_sink may be null (decode has neither).
struct AttentionOutputs {
  uint16_t* out;  // [rows, num_heads, 512] bf16
  float* lse;     // [rows / seq_q, num_heads, seq_q]
  const float* attn_sink;
  int seq_q;

  // Where (query row, head)'s lse goes.
  FMLA_HOST_DEVICE int64_t lse_offset(int row, int head, int num_heads) const {
    return (int64_t(row / seq_q) * num_heads + head) * seq_q + row % seq_q;
  }
};

inline AttentionShape attention_shape(const SparseDecodeParams& p) {
  return {p.q, p.batch * p.seq_q, p.num_heads, p.sm_scale};
}
inline AttentionShape attention_shape(const DecodeParams& p) { return {p.q, p.batch, p.num_heads, p.sm_scale}; }
inline AttentionOutputs attention_outputs(const SparseDecodeParams& p) { return {p.out, p.lse, p.attn_sink, p.seq_q}; }
inline AttentionOutputs attention_outputs(const DecodeParams& p) { return {p.out, nullptr, nullptr, 1}; }

// The end of one head's row, or of its split: `sum` is the row's sum of exp(score - max) over its valid keys
// (0 when it has none) and `lse` = max + ln(sum). The accumulator is multiplied by `scale` (1 / sum, and the
// attention sink when this is the final output; 0 for a row without keys), and `stored_lse` is what is written:
// lse, or for a row without keys +inf (final output) or -inf (a split's partial, which the combine skips).
struct RowEnd {
  float scale;
  float stored_lse;

  FMLA_HOST_DEVICE RowEnd(float sum, float lse, bool final_output, const float* attn_sink, int head) {
    const bool empty = sum == 0.f;
    scale = empty ? 0.f : 1.f / sum;
    if (final_output && attn_sink != nullptr && !empty) scale *= attn_sink_factor(attn_sink[head], lse);
    stored_lse = empty ? (final_output ? INFINITY : -INFINITY) : lse;
  }
};

// Writes a row end's lse: the final lse (when the op has one) or the split's partial lse.
FMLA_HOST_DEVICE void store_row_lse(const AttentionOutputs& outputs, const SplitKVWorkspace& workspace,
                                    const AttentionShape& shape, int row, int head, int split, float stored_lse) {
  if (workspace.num_splits == 1) {
    if (outputs.lse != nullptr) outputs.lse[outputs.lse_offset(row, head, shape.num_heads)] = stored_lse;
  } else {
    workspace.lse_accum[(int64_t(split) * shape.num_rows + row) * shape.num_heads + head] = stored_lse;
  }
}

}  // namespace flash_mla
