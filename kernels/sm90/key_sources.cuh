// Where an attention CTA's keys come from. A key source maps a query row's key positions to token bytes
// (fetch, then resolve), loads one thread's eighth of a token into registers, and turns it into bf16: SparseKeys
// reads the paged MODEL1 cache through top-k indices (main cache, then extra cache); CsrKeys reads a CSR range of
// decode's separate nope / rope / fp32-scale tensors.
//
// A key is loaded and dequantized by 8 threads: thread `sub` holds the 8-byte chunks sub + 8 j of the nope tiles
// (j = 0..6) and rope bytes 16 sub .. + 16, which become the 16-byte output chunks sub + 8 j (j = 7: rope) of the
// key's bf16 row.
#pragma once

#include <cstdint>

#include "../common/kv_cache.h"
#include "../common/params.h"
#include "../gpu/key_positions.h"
#include "dequant.cuh"

namespace flash_mla::sm90 {

constexpr int kThreadsPerKey = 8;

// 8 bytes from global memory through the read-only path; byte by byte where the cache is not 8-byte aligned.
template <bool kAligned>
__device__ __forceinline__ uint2 load_8_bytes(const uint8_t* src) {
  if constexpr (kAligned) {
    return __ldg(reinterpret_cast<const uint2*>(src));
  } else {
    uint32_t words[2] = {0u, 0u};
#pragma unroll
    for (int i = 0; i < 8; ++i) words[i / 4] |= uint32_t(__ldg(src + i)) << (8 * (i % 4));
    return make_uint2(words[0], words[1]);
  }
}

// What every key source loads for one thread's eighth of a key; Scales is the key's scale data.
template <class Scales>
struct KeyEighth {
  uint2 nope[kNumScaleTiles];
  uint2 rope[2];
  Scales scales;
};

template <bool kAligned>
__device__ __forceinline__ void load_key_data(uint2 (&nope)[kNumScaleTiles], uint2 (&rope)[2], const TokenBytes& bytes,
                                              int sub) {
#pragma unroll
  for (int j = 0; j < kNumScaleTiles; ++j) nope[j] = load_8_bytes<kAligned>(bytes.nope + 8 * sub + 64 * j);
  rope[0] = load_8_bytes<kAligned>(bytes.rope + 16 * sub);
  rope[1] = load_8_bytes<kAligned>(bytes.rope + 16 * sub + 8);
}

template <bool kAligned8>
struct SparseKeys {
  using Params = SparseDecodeParams;
  using Eighth = KeyEighth<uint2>;  // the 7 e8m0 scale bytes + pad, 8-byte aligned in both layouts
  static constexpr bool kAligned = kAligned8;
  static constexpr int kPassesPerRound = 2;  // keys a producer thread has in flight (each loaded a round ahead)

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

  // The fp8 format of the position's cache (the main and the extra cache may differ).
  __device__ Fp8Format format(int position) const { return positions.source(p, position).cache.format; }

  __device__ Eighth load(const TokenBytes& bytes, int sub) const {
    Eighth eighth;
    load_key_data<kAligned>(eighth.nope, eighth.rope, bytes, sub);
    eighth.scales = load_8_bytes<kAligned>(bytes.scales);
    return eighth;
  }

  // store(j, 8 bf16) for the output chunks j = 0..7. Scales that all fold into a bf16 exponent take the fast path.
  template <class Store>
  __device__ void dequant(const Eighth& eighth, Fp8Format format, Store&& store) const {
    const uint2 e8m0 = eighth.scales;
    uint32_t largest = __vmaxu4(e8m0.x, e8m0.y & 0x00FFFFFFu);  // the pad byte is not a scale
    largest = __vmaxu4(largest, largest >> 16);
    largest = __vmaxu4(largest, largest >> 8) & 0xFFu;
    const int shift = shift_exponent(format);
    const bool foldable = int(largest) + shift <= 254;
#pragma unroll
    for (int j = 0; j < kNumScaleTiles; ++j) {
      const uint32_t byte = (j < 4 ? e8m0.x >> (8 * j) : e8m0.y >> (8 * (j - 4))) & 0xFFu;
      store(j, foldable ? dequant_fp8x8_folded(eighth.nope[j], byte + shift)
                        : dequant_fp8x8_exact(eighth.nope[j], e8m0_to_float(uint8_t(byte)), format));
    }
    store(kNumScaleTiles, make_uint4(eighth.rope[0].x, eighth.rope[0].y, eighth.rope[1].x, eighth.rope[1].y));
  }
};

template <bool kAligned8>
struct CsrKeys {
  using Params = DecodeParams;
  struct Scales {
    float tile[kNumScaleTiles];
  };
  using Eighth = KeyEighth<Scales>;
  static constexpr bool kAligned = kAligned8;
  static constexpr int kPassesPerRound = 1;  // fp32 scales take 7 registers a key: one key in flight, not two

  const Params& p;
  TokenRange range;

  __device__ CsrKeys(const Params& params, int query_row)
      : p(params), range(csr_token_range(params.kv_indptr, query_row, params.num_tokens)) {}

  __device__ int num_positions() const { return int(range.end - range.begin); }

  __device__ int32_t fetch(int position) const { return position; }

  __device__ TokenBytes resolve(int position, int32_t) const { return csr_token_bytes(p, range.begin + position); }

  __device__ Fp8Format format(int) const { return p.format; }

  __device__ Eighth load(const TokenBytes& bytes, int sub) const {
    Eighth eighth;
    load_key_data<kAligned>(eighth.nope, eighth.rope, bytes, sub);
    const float* scales = reinterpret_cast<const float*>(bytes.scales);  // fp32, 4-byte aligned
#pragma unroll
    for (int j = 0; j < kNumScaleTiles; ++j) eighth.scales.tile[j] = __ldg(scales + j);
    return eighth;
  }

  template <class Store>
  __device__ void dequant(const Eighth& eighth, Fp8Format format, Store&& store) const {
#pragma unroll
    for (int j = 0; j < kNumScaleTiles; ++j) store(j, dequant_fp8x8_f32(eighth.nope[j], eighth.scales.tile[j], format));
    store(kNumScaleTiles, make_uint4(eighth.rope[0].x, eighth.rope[0].y, eighth.rope[1].x, eighth.rope[1].y));
  }
};

}  // namespace flash_mla::sm90
