// Where a workgroup's keys come from. A key source maps a query row's key positions to the global bytes of each
// key in two steps, so that the index load of a later tile overlaps the current one: tile(first).fetch(position)
// reads the position's token index (a global load; a negative result means "no key"), locate turns it into
// byte addresses (a stand-in's for no key or an invalid index). SparseKeys reads the paged MODEL1 cache through top-k
// indices (main cache, then extra cache) with e8m0 scales; CsrKeys reads a CSR range of decode's separate nope / rope /
// fp32-scale tensors. A scale is loaded as raw bits and decoded when the key is dequantized (its load is still in
// flight before). with_dequant(in_extra_cache, f) calls f(dequant), dequant(bytes, scale) turning a lane's 4 fp8 bytes
// of a key into bf16 in the format of the tile's cache: SparseKeys has one format for the main cache and one for the
// extra cache (they may differ: then one wave-uniform branch a tile around all of f), CsrKeys one.
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

  // The keys of the tile starting at (wave-uniform) position `first`: entries of one list.
  struct TileKeys {
    const SparseKVSource& source;
    const int32_t* list;
    int first_position;  // of the list's entry 0
    int length;          // of the list
    bool in_extra_cache;

    // The index at `position`, or -1 at or past `end` (the split's) or past the list.
    __device__ int32_t fetch(int position, int end) const {
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

  __device__ TileKeys tile(int first) const {
    const bool main = first < padded_main_length;
    return {p.sources[main ? 0 : 1], main ? lists.main_list : lists.extra_list,
            main ? 0 : padded_main_length, main ? lists.main_length : lists.total - lists.main_length, !main};
  }

  static constexpr int kScaleBytes = 1;  // e8m0
  // A token's nope bytes are followed by its rope bytes (either layout): 8 bytes from any nope element are readable,
  // and a rope element is found from the nope bytes.
  static constexpr bool kNopeRowFollowed = true;
  static constexpr bool kRopeFollowsNope = true;
  __device__ uint32_t load_scale_bits(const uint8_t* scale) const { return load_unaligned<uint8_t>(scale); }
  __device__ float scale_value(uint32_t bits) const { return e8m0_to_float(uint8_t(bits)); }

  // Every key e4m3fn: dequantized at half its value, the factor 2 folded into Q and the output (kE4m3fnHalved).
  static constexpr bool kE4m3fnHalved = kMainFormat == Fp8Format::kE4M3FN && kExtraFormat == Fp8Format::kE4M3FN;

  // e8m0 scales are powers of two: the products are exact in bf16.
  template <class F>
  __device__ void with_dequant(bool in_extra_cache, F&& f) const {
    auto main = [](uint32_t bytes, float scale) {
      return dequant_fp8x4_to_bf16<kMainFormat, true, kE4m3fnHalved>(bytes, scale);
    };
    if constexpr (kMainFormat == kExtraFormat) {
      f(main);
    } else if (in_extra_cache) {
      f([](uint32_t bytes, float scale) { return dequant_fp8x4_to_bf16<kExtraFormat, true>(bytes, scale); });
    } else {
      f(main);
    }
  }
};

template <Fp8Format kFormat>
struct CsrKeys {
  using Params = DecodeParams;
  static constexpr bool in_extra_cache = false;  // one token list, one format

  const Params& p;
  TokenRange range;

  __device__ CsrKeys(const Params& params, int query_row)
      : p(params), range(csr_token_range(params.kv_indptr, query_row, params.num_tokens)) {}

  __device__ int num_positions() const { return int(range.end - range.begin); }

  // No load: the range is the token list.
  __device__ int32_t fetch(int position, int end) const { return position < end ? position : -1; }

  // The position's token and valid = true; for -1 (no key: past the split's end) the range's first token, read and
  // weighted 0: its values times p = 0 add nothing (were one of them not finite, the row's output is not either).
  // The kernel locates only in splits with keys, so that token exists.
  __device__ TokenBytes locate(int32_t position, bool& valid) const {
    valid = position >= 0;
    return csr_token_bytes(p, range.begin + (valid ? position : 0));
  }

  __device__ const CsrKeys& tile(int) const { return *this; }

  static constexpr int kScaleBytes = 4;            // fp32
  static constexpr bool kNopeRowFollowed = false;  // the last token's nope row may end the nope tensor
  static constexpr bool kRopeFollowsNope = false;  // nope and rope are separate tensors
  __device__ uint32_t load_scale_bits(const uint8_t* scale) const { return load_unaligned<uint32_t>(scale); }
  __device__ float scale_value(uint32_t bits) const { return __builtin_bit_cast(float, bits); }

  static constexpr bool kE4m3fnHalved = kFormat == Fp8Format::kE4M3FN;  // as SparseKeys'

  // Any fp32 scale: the products are rounded to bf16.
  template <class F>
  __device__ void with_dequant(bool, F&& f) const {
    f([](uint32_t bytes, float scale) { return dequant_fp8x4_to_bf16<kFormat, false, kE4m3fnHalved>(bytes, scale); });
  }
};

}  // namespace flash_mla::gfx942
