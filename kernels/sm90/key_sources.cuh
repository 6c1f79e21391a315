// Where an attention CTA's keys come from. A key source maps a query row's key positions to token bytes and
// turns one staged token into bf16: SparseKeys reads the paged MODEL1 cache through top-k indices (main cache,
// then extra cache); CsrKeys reads a CSR range of decode's separate nope / rope / fp32-scale tensors.
#pragma once

#include <cstdint>

#include "../common/kv_cache.h"
#include "../common/params.h"
#include "dequant.cuh"

namespace flash_mla::sm90 {

// The global bytes of one key; nope == nullptr marks a position whose key is skipped (invalid index).
struct KeyBytes {
  const uint8_t* nope;
  const uint8_t* rope;
  const uint8_t* scales;
};

// A staged key in shared memory: [448 fp8 nope | 128 rope bytes | scales], kStagedKeyBytes apart.
constexpr int kStagedKeyBytes = 608;
constexpr int kStagedRopeOffset = kNopeDim;
constexpr int kStagedScaleOffset = kTokenDataBytes;

template <bool kAligned8>
struct SparseKeys {
  using Params = SparseDecodeParams;
  static constexpr int kScaleChunkBytes = 8;  // 7 e8m0 bytes + pad, 8-byte aligned in both layouts
  static constexpr int kScaleChunks = 1;
  static constexpr bool kAligned = kAligned8;

  const Params& p;
  int row;          // b * seq_q + s
  int main_length;  // positions [0, main_length) index the main cache, the rest the extra cache
  int total;

  __device__ SparseKeys(const Params& params, int query_row) : p(params), row(query_row) {
    const int batch = query_row / params.seq_q;
    main_length = clamp_topk_length(params.sources[0].topk_length, batch, params.sources[0].topk);
    const int extra = params.num_sources > 1
                          ? clamp_topk_length(params.sources[1].topk_length, batch, params.sources[1].topk)
                          : 0;
    total = main_length + extra;
  }

  __device__ int num_positions() const { return total; }

  __device__ KeyBytes locate(int position) const {
    const bool main = position < main_length;
    const SparseKVSource& source = main ? p.sources[0] : p.sources[1];
    const int32_t index = source.indices[int64_t(row) * source.topk + (main ? position : position - main_length)];
    if (!is_valid_token(index, source.cache.num_tokens)) return {nullptr, nullptr, nullptr};
    const TokenBytes token = locate_token(source.cache, index);
    return {token.nope, token.rope, token.scales};
  }

  // Output chunk c (8 values) of nope tile c / 8 of a staged key.
  __device__ uint4 dequant_nope_chunk(const uint8_t* staged, int c) const {
    const uint2 bytes = *reinterpret_cast<const uint2*>(staged + 8 * c);
    return dequant_fp8x8_e8m0(bytes, staged[kStagedScaleOffset + c / 8], p.sources[0].cache.format);
  }
};

template <bool kAligned8>
struct CsrKeys {
  using Params = DecodeParams;
  static constexpr int kScaleChunkBytes = 4;  // fp32 scales, 4-byte aligned
  static constexpr int kScaleChunks = kNumScaleTiles;
  static constexpr bool kAligned = kAligned8;

  const Params& p;
  TokenRange range;

  __device__ CsrKeys(const Params& params, int query_row)
      : p(params), range(csr_token_range(params.kv_indptr, query_row, params.num_tokens)) {}

  __device__ int num_positions() const { return int(range.end - range.begin); }

  __device__ KeyBytes locate(int position) const {
    const int64_t token = range.begin + position;
    return {p.kv_nope + token * kNopeDim, reinterpret_cast<const uint8_t*>(p.kv_rope + token * kRopeDim),
            reinterpret_cast<const uint8_t*>(p.kv_scales + token * kNumScaleTiles)};
  }

  __device__ uint4 dequant_nope_chunk(const uint8_t* staged, int c) const {
    const uint2 bytes = *reinterpret_cast<const uint2*>(staged + 8 * c);
    const float scale = reinterpret_cast<const float*>(staged + kStagedScaleOffset)[c / 8];
    return dequant_fp8x8_f32(bytes, scale, p.format);
  }
};

}  // namespace flash_mla::sm90
