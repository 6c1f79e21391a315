// fp8 -> bf16 dequantization of 4 values (a lane's share of a key row) with gfx942's converter.
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

// 4 fp8 values times scale -> 4 bf16 patterns (2 words, element 2i in the low half of word i). With
// kPowerOfTwoScale the products are exact in bf16 and the high halves are taken; otherwise they are rounded.
template <Fp8Format kFormat, bool kPowerOfTwoScale>
__device__ __forceinline__ u32x2 dequant_fp8x4_to_bf16(uint32_t bytes, float scale) {
  constexpr bool kFn = kFormat == Fp8Format::kE4M3FN;
  if constexpr (kFn) bytes = clear_negative_zeros(bytes);
  // v_cvt_pk_f32_fp8 converts the low (false) or high (true) two bytes; the selector is an immediate. Pairs
  // of fp32 so that the doubling and the scaling are packed instructions (v_pk_add/mul_f32).
  floatx2 low = as_floatx2(FMLA_AMDGCN(cvt_pk_f32_fp8)(int(bytes), false));
  floatx2 high = as_floatx2(FMLA_AMDGCN(cvt_pk_f32_fp8)(int(bytes), true));
  if constexpr (kFn) {  // doubling first keeps the product exact where doubling the scale would overflow
    low += low;
    high += high;
  }
  low *= scale;
  high *= scale;
  if constexpr (kPowerOfTwoScale) return u32x2{high_halves(low[0], low[1]), high_halves(high[0], high[1])};
  return u32x2{pack_bf16x2(low[0], low[1]), pack_bf16x2(high[0], high[1])};
}

}  // namespace flash_mla::gfx942
