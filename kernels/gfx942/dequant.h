// fp8 -> bf16 dequantization of 8 values (a lane's 16-byte chunk of a key row) with gfx942's converter.
//
// v_cvt_pk_f32_fp8 reads e4m3fnuz. The same bits in e4m3fn are worth twice as much (BRIEF §3.3), except 0x80,
// which is -0 in e4m3fn and NaN in e4m3fnuz: an e4m3fn chunk first has its 0x80 bytes cleared to +0, then gets
// the factor 2 in its scale. fp8 NaN encodings of e4m3fn become finite values (the CPU backend keeps them NaN).
#pragma once

#include "../common/numerics.h"
#include "primitives.h"

namespace flash_mla::gfx942 {

// 0x80 bytes -> 0x00, the other bytes unchanged (SWAR zero-byte test on bytes ^ 0x80).
__device__ __forceinline__ uint32_t clear_negative_zeros(uint32_t bytes) {
  const uint32_t flipped = bytes ^ 0x80808080u;
  const uint32_t zero_bytes = (flipped - 0x01010101u) & ~flipped & 0x80808080u;
  return bytes & ~zero_bytes;
}

// 8 fp8 values times scale -> 8 bf16 patterns (4 words, element 2i in the low half of word i). With
// kPowerOfTwoScale the products are exact in bf16 and the high halves are taken; otherwise they are rounded.
template <Fp8Format kFormat, bool kPowerOfTwoScale>
__device__ __forceinline__ u32x4 dequant_fp8x8_to_bf16(u32x2 bytes, float scale) {
  constexpr bool kFn = kFormat == Fp8Format::kE4M3FN;
  if constexpr (kFn) {
    bytes[0] = clear_negative_zeros(bytes[0]);
    bytes[1] = clear_negative_zeros(bytes[1]);
  }
  // v_cvt_pk_f32_fp8 converts the low (false) or high (true) two bytes of a word; the selector is an immediate.
  const auto pairs = {FMLA_AMDGCN(cvt_pk_f32_fp8)(int(bytes[0]), false), FMLA_AMDGCN(cvt_pk_f32_fp8)(int(bytes[0]), true),
                      FMLA_AMDGCN(cvt_pk_f32_fp8)(int(bytes[1]), false), FMLA_AMDGCN(cvt_pk_f32_fp8)(int(bytes[1]), true)};
  uint32_t words[4];
  int i = 0;
  for (const auto& pair : pairs) {
    // Doubling first keeps an e4m3fn product exact where doubling the scale would overflow.
    const float lo = (kFn ? pair[0] * 2.f : pair[0]) * scale, hi = (kFn ? pair[1] * 2.f : pair[1]) * scale;
    words[i++] = kPowerOfTwoScale ? high_halves(lo, hi) : pack_bf16x2(lo, hi);
  }
  return u32x4{words[0], words[1], words[2], words[3]};
}

}  // namespace flash_mla::gfx942
