// Plain parameter structs handed from the binding layer to every backend. Tensors are contiguous unless strides
// are given (q and the index lists are read in place through theirs); bf16 data travels as its 16-bit pattern so no
// backend type leaks in here.
#pragma once

#include <cstdint>

#include "kv_cache.h"

namespace flash_mla {

// Query rows in memory: row r = batch * seq_q + token, its head h at data + batch * batch_stride + token *
// seq_stride + h * head_stride, the head's 512 bf16 values contiguous (strides in elements).
struct QueryRows {
  const uint16_t* data = nullptr;
  int seq_q = 1;
  int64_t batch_stride = 0;
  int64_t seq_stride = 0;
  int64_t head_stride = 0;

  FMLA_HOST_DEVICE const uint16_t* row(int r) const {
    return data + int64_t(r / seq_q) * batch_stride + int64_t(r % seq_q) * seq_stride;
  }
};

// One paged cache with the top-k token indices that select from it.
struct SparseKVSource {
  PagedKVCache cache;
  const int32_t* indices = nullptr;  // [batch, seq_q, topk], each list contiguous; index = block * block_size + offset
  int64_t indices_batch_stride = 0;  // elements
  int64_t indices_seq_stride = 0;
  const int32_t* topk_length = nullptr;  // [batch] or null: batch i uses indices[i, :, :topk_length[i]]
  int64_t topk_length_stride = 1;
  int topk = 0;

  // The top-k list of query token `token` of batch row `batch`.
  FMLA_HOST_DEVICE const int32_t* list(int batch, int token) const {
    return indices + int64_t(batch) * indices_batch_stride + int64_t(token) * indices_seq_stride;
  }

  // Entries of batch row `batch`'s lists that count: its top-k length clamped to [0, topk]; no lengths means all.
  FMLA_HOST_DEVICE int length(int batch) const {
    if (topk_length == nullptr) return topk;
    const int32_t value = topk_length[int64_t(batch) * topk_length_stride];
    return value < 0 ? 0 : (value > topk ? topk : value);
  }
};

constexpr int kMaxSparseSources = 2;  // the main cache and FlashMLA MODEL1's extra cache

struct SparseDecodeParams {
  int batch = 0;
  int seq_q = 0;
  int num_heads = 0;
  QueryRows q;  // [batch, seq_q, num_heads, 512] bf16
  SparseKVSource sources[kMaxSparseSources];
  int num_sources = 1;
  float sm_scale = 0.f;
  const float* attn_sink = nullptr;  // [num_heads] or null
  uint16_t* out = nullptr;           // [batch, seq_q, num_heads, 512] bf16
  float* lse = nullptr;              // [batch, num_heads, seq_q]
};

struct DecodeParams {
  int batch = 0;
  int num_heads = 0;
  int64_t num_tokens = 0;
  QueryRows q;                       // [batch, num_heads, 512] bf16 (seq_q 1)
  const uint8_t* kv_nope = nullptr;  // [num_tokens, 448] fp8
  Fp8Format format = Fp8Format::kE4M3FNUZ;
  const uint16_t* kv_rope = nullptr;   // [num_tokens, 64] bf16
  const float* kv_scales = nullptr;    // [num_tokens, 7]
  const int32_t* kv_indptr = nullptr;  // [batch + 1]; batch i attends [indptr[i], indptr[i+1]) clamped to [0, T]
  float sm_scale = 0.f;
  uint16_t* out = nullptr;  // [batch, num_heads, 512] bf16
};

// Token range of CSR batch i, clamped to [0, num_tokens]; empty when end <= begin.
struct TokenRange {
  int64_t begin;
  int64_t end;
};

FMLA_HOST_DEVICE TokenRange csr_token_range(const int32_t* indptr, int batch_index, int64_t num_tokens) {
  auto clamp = [num_tokens](int64_t v) { return v < 0 ? int64_t(0) : (v > num_tokens ? num_tokens : v); };
  const int64_t begin = clamp(indptr[batch_index]);
  const int64_t end = clamp(indptr[batch_index + 1]);
  return {begin, end > begin ? end : begin};
}

}  // namespace flash_mla
