// sparse_attn_decode on the CPU: each (batch, query token) row walks the valid indices of both caches in
// order, dequantizes each selected token in place from the paged cache, and streams it through RowAttention.
#include <ATen/Parallel.h>

#include <cstring>

#include "attention_core.h"
#include "cpu_kernels.h"

namespace flash_mla::cpu {
namespace {

void dequantize_cache_token(const PagedKVCache& cache, int32_t token, float* key) {
  const TokenBytes bytes = locate_token(cache, token);
  float scales[kNumScaleTiles];
  for (int tile = 0; tile < kNumScaleTiles; ++tile) scales[tile] = e8m0_to_float(bytes.scales[tile]);
  uint16_t rope[kRopeDim];
  std::memcpy(rope, bytes.rope, sizeof(rope));  // the cache gives no 2-byte alignment guarantee
  dequantize_key(bytes.nope, scales, rope, fp8_table(cache.format), key);
}

void attend_row(const SparseDecodeParams& p, int batch_index, int query_index) {
  const int64_t row = int64_t(batch_index) * p.seq_q + query_index;
  RowAttention attention(p.q.row(int(row)), p.q.head_stride, p.num_heads, p.sm_scale);
  for (int s = 0; s < p.num_sources; ++s) {
    const SparseKVSource& source = p.sources[s];
    const int length = source.length(batch_index);
    const int32_t* indices = source.list(batch_index, query_index);
    for (int k = 0; k < length; ++k) {
      if (!is_valid_token(indices[k], source.cache.num_tokens)) continue;
      dequantize_cache_token(source.cache, indices[k], attention.key_slot());
      attention.push_key();
    }
  }
  attention.write(p.out + row * p.num_heads * kHeadDim, kHeadDim,
                  p.lse + int64_t(batch_index) * p.num_heads * p.seq_q + query_index, p.seq_q, p.attn_sink);
}

}  // namespace

void sparse_attn_decode(const SparseDecodeParams& params) {
  const int64_t rows = int64_t(params.batch) * params.seq_q;
  at::parallel_for(0, rows, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) attend_row(params, int(row / params.seq_q), int(row % params.seq_q));
  });
}

}  // namespace flash_mla::cpu
