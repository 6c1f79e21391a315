// Where a workgroup's keys come from. A key source maps a query row's key positions to the global bytes of each
// key. tile(first, end) is the tile of positions [first, first + 16) cut at the split's end; its fetch(position)
// gives the position's token index (negative: no key), a tile ahead of the loads, so that the index load of a later
// tile overlaps the current one. SparseKeys reads the paged MODEL1 cache through top-k indices (main cache, then extra
// cache) with e8m0 scales: a lane locates one key (locate: its byte addresses, a stand-in's for no key or an invalid
// index) and shares them with its DPP quad. CsrKeys reads a CSR range of decode's separate nope / rope / fp32-scale
// tensors: a tile is consecutive tokens (kConsecutiveTokens), read through range-checked loads at constant strides
// from the tile's first token. A scale is loaded as raw bits and decoded when the key is dequantized (its load is
// still in flight before). with_dequant(in_extra_cache, f) calls f(dequant), dequant(bytes, scale) turning a lane's
// 4 fp8 bytes of a key into bf16 in the format of the tile's cache: SparseKeys has one format for the main cache and
// one for the extra cache (they may differ: then one wave-uniform branch a tile around all of f), CsrKeys one.
#pragma once

#include <cstdint>

#include "../common/kv_cache.h"
#include "../common/params.h"
#include "../gpu/key_positions.h"
#include "dequant.h"
#include "primitives.h"

namespace flash_mla::gfx942 {

// What a skipped sparse key reads instead of a token: zeros, which dequantize to zeros (an e8m0 byte 0 is 2^-127),
// so its key row and value column need no masking. Past every offset a lane reads at.
__device__ const uint8_t kSkippedKeyBytes[1024] = {};
static_assert(kTokenDataBytes + 8 <= sizeof(kSkippedKeyBytes), "a lane's offsets stay inside the skipped key's bytes");

// A sparse row's keys: the main cache's top-k list, then the extra cache's, each cut to its clamped length. The
// main list's positions are rounded up to whole key tiles (the rest are skipped like invalid indices), so that
// no tile mixes the lists: a tile's cache parameters, its fp8 format among them, are then wave-uniform.
template <Fp8Format kMainFormat, Fp8Format kExtraFormat>
struct SparseKeys {
  using Params = SparseDecodeParams;

  const Params& p;
  SparseRowPositions lists;
  int padded_main_length;

  __device__ SparseKeys(const Params& params, int query_row)
      : p(params),
        lists(params, query_row),
        padded_main_length((lists.main_length + kKeysPerTile - 1) / kKeysPerTile * kKeysPerTile) {}

  __device__ int num_positions() const { return padded_main_length + (lists.total - lists.main_length); }

  static constexpr bool kConsecutiveTokens = false;

  // The keys of the tile starting at (wave-uniform) position `first`: entries of one list.
  struct TileKeys {
    const SparseKVSource& source;
    const int32_t* list;
    int first_position;  // of the list's entry 0
    int length;          // of the list
    int end;             // the split's end position
    bool in_extra_cache;

    // The index at `position`, or -1 at or past the split's end or past the list.
    __device__ int32_t fetch(int position) const {
      const int entry = position - first_position;
      return position < end && entry < length ? list[entry] : -1;
    }

    // The key's bytes and valid = true for a valid index; for any other (negative: no key), kSkippedKeyBytes for
    // each part. Branch-free: an invalid index is located as token 0, whose bytes are never read.
    __device__ TokenBytes locate(int32_t index, bool& valid) const {
      valid = is_valid_token(index, source.cache.num_tokens);
      const TokenBytes bytes = locate_token(source.cache, valid ? index : 0);
      return valid ? bytes : TokenBytes{kSkippedKeyBytes, kSkippedKeyBytes, kSkippedKeyBytes};
    }
  };

  __device__ TileKeys tile(int first, int end) const {
    const bool main = first < padded_main_length;
    return {p.sources[main ? 0 : 1],
            main ? lists.main_list : lists.extra_list,
            main ? 0 : padded_main_length,
            main ? lists.main_length : lists.total - lists.main_length,
            end,
            !main};
  }

  static constexpr int kScaleBytes = 1;  // e8m0
  // A token's nope bytes are followed by its rope bytes (either layout): 8 bytes from any nope element are readable,
  // and a rope element is found from the nope bytes.
  static constexpr bool kRopeFollowsNope = true;
  __device__ uint32_t load_scale_bits(const uint8_t* scale) const { return load_unaligned<uint8_t>(scale); }
  __device__ float scale_value(uint32_t bits) const { return e8m0_to_float(uint8_t(bits)); }

  // Every key e4m3fn: dequantized at half its value, the factor 2 folded into Q and the output (kE4m3fnHalved).
  static constexpr bool kE4m3fnHalved = kMainFormat == Fp8Format::kE4M3FN && kExtraFormat == Fp8Format::kE4M3FN;

  // e8m0 scales are powers of two: the products are exact in bf16.
  template <class F>
  __device__ void with_dequant(bool in_extra_cache, F&& f) const {
    if constexpr (kMainFormat != kExtraFormat) {
      if (in_extra_cache) {
        f([](uint32_t bytes, float scale) { return dequant_fp8x4_to_bf16<kExtraFormat, true>(bytes, scale); });
        return;
      }
    }
    f([](uint32_t bytes, float scale) {
      return dequant_fp8x4_to_bf16<kMainFormat, true, kE4m3fnHalved>(bytes, scale);
    });
  }
};

template <Fp8Format kFormat>
struct CsrKeys {
  using Params = DecodeParams;

  const Params& p;
  TokenRange range;

  __device__ CsrKeys(const Params& params, int query_row)
      : p(params), range(csr_token_range(params.kv_indptr, query_row, params.num_tokens)) {}

  __device__ int num_positions() const { return int(range.end - range.begin); }

  static constexpr bool kConsecutiveTokens = true;
  static constexpr int kNopeRowBytes = kNopeDim, kRopeRowBytes = 2 * kRopeDim, kScaleRowBytes = 4 * kNumScaleTiles;

  // Tokens first .. first + 15 of the range, key k at k row strides from the tile's first token in each tensor. Each
  // range ends at the split's end, so a key past it reads zeros (its score is masked by fetch's -1; its values add
  // nothing), and no load within a key's row (load_checked's contract) reads outside the row's tokens.
  struct TileKeys {
    static constexpr bool in_extra_cache = false;  // one token list, one format
    CheckedRange nope, rope, scales;
    int end;  // the split's end position

    // The position itself, or -1 at or past the split's end.
    __device__ int32_t fetch(int position) const { return position < end ? position : -1; }

    // Key `key`'s bytes at a nope share's 4 or a rope share's 8 (ShareSpot), and a nope share's scale.
    template <class Spot>
    __device__ uint32_t load_nope(int key, const Spot& spot) const {
      return load_checked<uint32_t>(nope, key * kNopeRowBytes + spot.part_offset, 0);
    }
    template <class Spot>
    __device__ u32x2 load_rope(int key, const Spot& spot) const {
      return load_checked<u32x2>(rope, key * kRopeRowBytes + spot.part_offset, 0);
    }
    template <class Spot>
    __device__ uint32_t load_scale_bits(int key, const Spot& spot) const {
      // The share's scale tile is wave-uniform: a scalar offset, inside the key's row.
      return load_checked<uint32_t>(scales, key * kScaleRowBytes, spot.scale_offset);
    }
  };

  __device__ TileKeys tile(int first, int end) const {
    const int keys = end - first < kKeysPerTile ? (end > first ? end - first : 0) : kKeysPerTile;
    const int64_t token = range.begin + first;
    return {checked_range(p.kv_nope + token * kNopeRowBytes, uint32_t(keys * kNopeRowBytes)),
            checked_range(p.kv_rope + token * kRopeDim, uint32_t(keys * kRopeRowBytes)),
            checked_range(p.kv_scales + token * kNumScaleTiles, uint32_t(keys * kScaleRowBytes)), end};
  }

  static constexpr int kScaleBytes = 4;            // fp32
  static constexpr bool kRopeFollowsNope = false;  // nope and rope are separate tensors
  __device__ float scale_value(uint32_t bits) const { return __builtin_bit_cast(float, bits); }

  static constexpr bool kE4m3fnHalved = kFormat == Fp8Format::kE4M3FN;  // as SparseKeys'

  // Any fp32 scale: the products are rounded to bf16.
  template <class F>
  __device__ void with_dequant(bool, F&& f) const {
    f([](uint32_t bytes, float scale) { return dequant_fp8x4_to_bf16<kFormat, false, kE4m3fnHalved>(bytes, scale); });
  }
};

}  // namespace flash_mla::gfx942
