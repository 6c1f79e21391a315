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
  const int32_t* main_list;   // the row's top-k list in the main cache
  const int32_t* extra_list;  // and in the extra cache (null without one)
  int main_length;
  int total;

  FMLA_HOST_DEVICE SparseRowPositions(const SparseDecodeParams& p, int query_row) {
    const int batch = query_row / p.seq_q, token = query_row % p.seq_q;
    main_list = p.sources[0].list(batch, token);
    extra_list = p.num_sources > 1 ? p.sources[1].list(batch, token) : nullptr;
    main_length = p.sources[0].length(batch);
    total = main_length + (p.num_sources > 1 ? p.sources[1].length(batch) : 0);
  }

  FMLA_HOST_DEVICE const SparseKVSource& source(const SparseDecodeParams& p, int position) const {
    return position < main_length ? p.sources[0] : p.sources[1];
  }

  // The token index stored at a position (a global load; may be invalid).
  FMLA_HOST_DEVICE int32_t index(int position) const {
    return position < main_length ? main_list[position] : extra_list[position - main_length];
  }
};

// A CSR row's token `token` in decode's separate tensors: its nope bytes, rope and fp32 scales.
FMLA_HOST_DEVICE TokenBytes csr_token_bytes(const DecodeParams& p, int64_t token) {
  return {p.kv_nope + token * kNopeDim, reinterpret_cast<const uint8_t*>(p.kv_rope + token * kRopeDim),
          reinterpret_cast<const uint8_t*>(p.kv_scales + token * kNumScaleTiles)};
}

}  // namespace flash_mla
