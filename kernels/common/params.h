// Plain parameter structs handed from the binding layer to every backend. Tensors are contiguous unless a
// stride is given; bf16 data travels as its 16-bit pattern so no backend type leaks in here.
#pragma once

#include <cstdint>

#include "kv_cache.h"

namespace flash_mla {

// One paged cache with the top-k token indices that select from it.
struct SparseKVSource {
  PagedKVCache cache;
  const int32_t* indices = nullptr;      // [batch, seq_q, topk]; flat index = block * block_size + offset
  const int32_t* topk_length = nullptr;  // [batch] or null: batch i uses indices[i, :, :topk_length[i]]
  int topk = 0;
};

constexpr int kMaxSparseSources = 2;  // the main cache and FlashMLA MODEL1's extra cache

struct SparseDecodeParams {
  int batch = 0;
  int seq_q = 0;
  int num_heads = 0;
  const uint16_t* q = nullptr;  // [batch, seq_q, num_heads, 512] bf16
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
  const uint16_t* q = nullptr;       // [batch, num_heads, 512] bf16
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
