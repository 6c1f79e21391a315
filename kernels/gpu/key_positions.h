// A query row's keys as the GPU kernels walk them: positions 0, 1, ... of the row, each mapped to its token.
// Sparse rows list the main cache's top-k positions, then the extra cache's; CSR rows are a token range.
#pragma once

#include <cstdint>

#include "../common/kv_cache.h"
#include "../common/params.h"

namespace flash_mla {

// Sparse row: positions [0, main_length) are entries of the main cache's top-k list, [main_length, total) of
// the extra cache's (both lists cut to their clamped top-k lengths).
struct SparseRowPositions {
  int row;  // batch * seq_q + query token
  int main_length;
  int total;

  FMLA_HOST_DEVICE SparseRowPositions(const SparseDecodeParams& p, int query_row) : row(query_row) {
    const int batch = query_row / p.seq_q;
    main_length = clamp_topk_length(p.sources[0].topk_length, batch, p.sources[0].topk);
    const int extra = p.num_sources > 1 ? clamp_topk_length(p.sources[1].topk_length, batch, p.sources[1].topk) : 0;
    total = main_length + extra;
  }

  FMLA_HOST_DEVICE const SparseKVSource& source(const SparseDecodeParams& p, int position) const {
    return position < main_length ? p.sources[0] : p.sources[1];
  }

  // The token index stored at a position (a global load; may be invalid).
  FMLA_HOST_DEVICE int32_t index(const SparseDecodeParams& p, int position) const {
    const bool main = position < main_length;
    return listed_index(main ? p.sources[0] : p.sources[1], row, main ? position : position - main_length);
  }

  // Entry `entry` of query row `row`'s top-k list of one source.
  FMLA_HOST_DEVICE static int32_t listed_index(const SparseKVSource& source, int row, int entry) {
    return source.indices[int64_t(row) * source.topk + entry];
  }
};

// A CSR row's token `token` in decode's separate tensors: its nope bytes, rope and fp32 scales.
FMLA_HOST_DEVICE TokenBytes csr_token_bytes(const DecodeParams& p, int64_t token) {
  return {p.kv_nope + token * kNopeDim, reinterpret_cast<const uint8_t*>(p.kv_rope + token * kRopeDim),
          reinterpret_cast<const uint8_t*>(p.kv_scales + token * kNumScaleTiles)};
}

}  // namespace flash_mla
