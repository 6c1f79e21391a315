// The MODEL1 FP8 KV cache: dimensions, the two paged layouts, and where each part of a token lives.
#pragma once

#include <cstdint>

#include "host_device.h"
#include "numerics.h"

namespace flash_mla {

constexpr int kHeadDim = 512;                             // d_qk = d_v: K = V = the compressed latent
constexpr int kNopeDim = 448;                             // fp8 part
constexpr int kRopeDim = 64;                              // bf16 part
constexpr int kScaleTileDim = 64;                         // nope elements sharing one e8m0 scale
constexpr int kNumScaleTiles = kNopeDim / kScaleTileDim;  // 7
constexpr int kTokenBytes = 584;                          // a token's bytes in the "token" layout
constexpr int kTokenDataBytes = kNopeDim + 2 * kRopeDim;  // 576: nope + rope
constexpr int kTokenScaleBytes = 8;                       // 7 e8m0 scales + 1 pad

enum class KVLayout : int {
  kToken = 0,     // per token: [448 fp8 nope | 64 bf16 rope | 7 e8m0 | pad]
  kFlashMLA = 1,  // per block: block_size x [448 fp8 nope | 64 bf16 rope], then block_size x [7 e8m0 | pad]
};

// n / divisor for 0 <= n < 2^31 by a multiply and a shift (GPUs have no integer divider): with
// s = ceil(log2 divisor), multiplier = floor(2^(31+s) / divisor) + 1 < 2^32 is exact on that range
// (Granlund-Montgomery).
struct FastDivisor {
  uint32_t divisor = 1;
  uint32_t multiplier = 0x80000001u;
  int shift = 31;

  FastDivisor() = default;
  explicit FastDivisor(uint32_t d) : divisor(d) {
    int s = 0;
    while ((uint64_t(1) << s) < d) ++s;
    multiplier = uint32_t((uint64_t(1) << (31 + s)) / d + 1);
    shift = 31 + s;
  }

  FMLA_HOST_DEVICE uint32_t divide(uint32_t n) const { return uint32_t((uint64_t(n) * multiplier) >> shift); }
};

// A paged cache as the kernels see it: raw bytes, a block stride, and how to read a token.
struct PagedKVCache {
  const uint8_t* data = nullptr;
  int64_t block_stride = 0;  // bytes between consecutive blocks (FlashMLA pads blocks, so not block_size * 584)
  FastDivisor block_size;    // tokens per block
  int64_t num_tokens = 0;    // num_blocks * block_size: the exclusive bound of a valid index
  KVLayout layout = KVLayout::kToken;
  Fp8Format format = Fp8Format::kE4M3FNUZ;
};

// Byte pointers to the three parts of one token.
struct TokenBytes {
  const uint8_t* nope;    // 448 fp8
  const uint8_t* rope;    // 64 bf16
  const uint8_t* scales;  // 7 e8m0
};

FMLA_HOST_DEVICE bool is_valid_token(int64_t index, int64_t num_tokens) { return index >= 0 && index < num_tokens; }

// Only for a valid index (is_valid_token): an invalid one would address memory outside the cache. Indices are
// int32, so a valid one is below 2^31, the range of the fast division. The layout picks strides, not code: one
// sequence of arithmetic for both (a GPU's select of uniform values is scalar; a branch's two paths are not).
FMLA_HOST_DEVICE TokenBytes locate_token(const PagedKVCache& cache, int32_t token) {
  const uint32_t block = cache.block_size.divide(uint32_t(token));
  const uint32_t offset = uint32_t(token) - block * cache.block_size.divisor;
  const bool token_layout = cache.layout == KVLayout::kToken;
  const int64_t row_bytes = token_layout ? kTokenBytes : kTokenDataBytes;
  const int64_t scales_begin = token_layout ? kTokenDataBytes : int64_t(cache.block_size.divisor) * kTokenDataBytes;
  const int64_t scale_stride = token_layout ? kTokenBytes : kTokenScaleBytes;
  const uint8_t* block_base = cache.data + int64_t(block) * cache.block_stride;
  const uint8_t* nope = block_base + int64_t(offset) * row_bytes;
  return {nope, nope + kNopeDim, block_base + scales_begin + int64_t(offset) * scale_stride};
}

// The token's bytes, or all null for an invalid index (whose memory must not be touched).
FMLA_HOST_DEVICE TokenBytes locate_valid_token(const PagedKVCache& cache, int32_t token) {
  if (!is_valid_token(token, cache.num_tokens)) return {nullptr, nullptr, nullptr};
  return locate_token(cache, token);
}

}  // namespace flash_mla
