// Where a workgroup's keys come from. A key source maps a query row's key positions to the global bytes of each
// key and reads its per-tile scales: SparseKeySource reads the paged MODEL1 cache through top-k indices (main
// cache, then extra cache) with e8m0 scales; CsrKeySource reads a CSR range of decode's separate nope / rope /
// fp32-scale tensors. kFormat is the fp8 format of the nope bytes.
#pragma once

#include <cstdint>

#include "../common/key_positions.h"
#include "../common/kv_cache.h"
#include "../common/params.h"
#include "primitives.h"

namespace flash_mla::gfx942 {

// The global bytes of one key; nope == nullptr marks a key that is skipped (invalid index).
struct KeyLocation {
  const uint8_t* nope;
  const uint8_t* rope;
  const uint8_t* scales;
};

template <Fp8Format kFormatValue>
struct SparseKeySource {
  using Params = SparseDecodeParams;
  static constexpr Fp8Format kFormat = kFormatValue;
  static constexpr bool kPowerOfTwoScales = true;  // e8m0

  const Params& p;
  SparseRowPositions positions;

  __device__ SparseKeySource(const Params& params, int query_row) : p(params), positions(params, query_row) {}

  __device__ int num_positions() const { return positions.total; }

  __device__ KeyLocation locate(int position) const {
    const int32_t index = positions.index(p, position);
    const SparseKVSource& source = positions.source(p, position);
    if (!is_valid_token(index, source.cache.num_tokens)) return {nullptr, nullptr, nullptr};
    const TokenBytes token = locate_token(source.cache, index);
    return {token.nope, token.rope, token.scales};
  }

  __device__ float tile_scale(const KeyLocation& key, int tile) const {
    return e8m0_to_float(load_unaligned<uint8_t>(key.scales + tile));
  }
};

template <Fp8Format kFormatValue>
struct CsrKeySource {
  using Params = DecodeParams;
  static constexpr Fp8Format kFormat = kFormatValue;
  static constexpr bool kPowerOfTwoScales = false;  // any fp32 scale: products are rounded to bf16

  const Params& p;
  TokenRange range;

  __device__ CsrKeySource(const Params& params, int query_row)
      : p(params), range(csr_token_range(params.kv_indptr, query_row, params.num_tokens)) {}

  __device__ int num_positions() const { return int(range.end - range.begin); }

  __device__ KeyLocation locate(int position) const {
    const int64_t token = range.begin + position;
    return {p.kv_nope + token * kNopeDim, reinterpret_cast<const uint8_t*>(p.kv_rope + token * kRopeDim),
            reinterpret_cast<const uint8_t*>(p.kv_scales + token * kNumScaleTiles)};
  }

  __device__ float tile_scale(const KeyLocation& key, int tile) const {
    return load_unaligned<float>(key.scales + 4 * tile);
  }
};

}  // namespace flash_mla::gfx942
