// Where an attention CTA's keys come from. A key source maps a query row's key positions to token bytes
// (fetch, then resolve) and turns one staged token into bf16: SparseKeys reads the paged MODEL1 cache through top-k
// indices (main cache, then extra cache); CsrKeys reads a CSR range of decode's separate nope / rope / fp32-scale
// tensors.
#pragma once

#include <cstdint>

#include "../common/kv_cache.h"
#include "../common/params.h"
#include "../gpu/key_positions.h"
#include "dequant.cuh"

namespace flash_mla::sm90 {

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
  SparseRowPositions positions;

  __device__ SparseKeys(const Params& params, int query_row) : p(params), positions(params, query_row) {}

  __device__ int num_positions() const { return positions.total; }

  // Locating a key takes two steps, so the index load of a later tile can overlap the current one: fetch reads
  // the position's token index (a global load), resolve turns it into byte addresses.
  __device__ int32_t fetch(int position) const { return positions.index(position); }

  // The key's global bytes; nope == nullptr marks a skipped key (invalid index).
  __device__ TokenBytes resolve(int position, int32_t index) const {
    return locate_valid_token(positions.source(p, position).cache, index);
  }

  // A staged key's 7 e8m0 scale bytes (+ pad), and whether all fold into a bf16 exponent (the fast path).
  struct KeyScales {
    uint2 e8m0;
    bool foldable;
  };

  __device__ KeyScales load_scales(const uint8_t* staged) const {
    const uint2 e8m0 = *reinterpret_cast<const uint2*>(staged + kStagedScaleOffset);
    uint32_t largest = __vmaxu4(e8m0.x, e8m0.y & 0x00FFFFFFu);  // the pad byte is not a scale
    largest = __vmaxu4(largest, largest >> 16);
    largest = __vmaxu4(largest, largest >> 8) & 0xFFu;
    return {e8m0, int(largest) + shift_exponent(p.sources[0].cache.format) <= 254};
  }

  // 8 fp8 values of nope tile `tile` -> 8 bf16.
  __device__ uint4 dequant_chunk(uint2 fp8, const KeyScales& scales, int tile) const {
    const uint32_t byte = (tile < 4 ? scales.e8m0.x >> (8 * tile) : scales.e8m0.y >> (8 * (tile - 4))) & 0xFFu;
    const Fp8Format format = p.sources[0].cache.format;
    if (scales.foldable) return dequant_fp8x8_folded(fp8, byte + shift_exponent(format));
    return dequant_fp8x8_exact(fp8, e8m0_to_float(uint8_t(byte)), format);
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

  __device__ int32_t fetch(int position) const { return position; }

  __device__ TokenBytes resolve(int position, int32_t) const { return csr_token_bytes(p, range.begin + position); }

  struct KeyScales {
    const float* scales;  // the staged fp32 scales
  };

  __device__ KeyScales load_scales(const uint8_t* staged) const {
    return {reinterpret_cast<const float*>(staged + kStagedScaleOffset)};
  }

  __device__ uint4 dequant_chunk(uint2 fp8, const KeyScales& scales, int tile) const {
    return dequant_fp8x8_f32(fp8, scales.scales[tile], p.format);
  }
};

}  // namespace flash_mla::sm90
