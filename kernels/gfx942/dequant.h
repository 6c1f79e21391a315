// fp8 -> bf16 dequantization of 4 values (a lane's share of a key row) with gfx942's converter.
//
// v_cvt_pk_f32_fp8 reads e4m3fnuz on gfx940, gfx941 and gfx942 (gfx950 reads OCP e4m3fn instead, so these kernels
// are built for those three only). The same bits in e4m3fn are worth twice as much as in e4m3fnuz (bias 7 against
// 8), except 0x80, which is -0 in e4m3fn and NaN in e4m3fnuz: an e4m3fn chunk first has its 0x80 bytes cleared to
// +0, then gets the factor 2. So e4m3fn -0 reads as +0, and the e4m3fn NaN encodings (0x7F, 0xFF) as finite values
// (the CPU backend keeps them NaN); every other byte of either format reads as its exact value.
#pragma once

#include "../common/numerics.h"
#include "primitives.h"

#if defined(__HIP_DEVICE_COMPILE__) && !defined(__gfx940__) && !defined(__gfx941__) && !defined(__gfx942__)
#error "kernels/gfx942 reads fp8 as gfx940/gfx941/gfx942 decode it (e4m3fnuz): build for one of those"
#endif

namespace flash_mla::gfx942 {

// 0x80 bytes -> 0x00, every other byte unchanged. Byte-wise without carries between bytes: a byte's 7 magnitude
// bits plus 0x7F reach bit 7 exactly when they are not all zero (at most 0xFE), and only then is the sign kept; the
// low 7 bits of (bytes & that sum) are within the magnitudes, so one v_and_or_b32 ends it (3 VALU a word).
__device__ __forceinline__ uint32_t clear_negative_zeros(uint32_t bytes) {
  const uint32_t magnitudes = bytes & 0x7F7F7F7Fu;
  return and_or(bytes, magnitudes + 0x7F7F7F7Fu, magnitudes);
}

// 4 fp8 values times scale -> 4 bf16 patterns (2 words, element 2i in the low half of word i). With
// kPowerOfTwoScale the products are exact in bf16 and the high halves are taken; otherwise they are rounded to
// nearest, ties away from zero (one VALU a value; round-to-nearest-even takes two and differs on exact ties only). With
// kE4m3fnHalved, e4m3fn values come out at half their value (the e4m3fnuz value of the same bits, -0 cleared): the
// caller folds the factor 2 into its other operands (a power of two: the same roundings, halved).
template <Fp8Format kFormat, bool kPowerOfTwoScale, bool kE4m3fnHalved = false>
__device__ __forceinline__ u32x2 dequant_fp8x4_to_bf16(uint32_t bytes, float scale) {
  constexpr bool kFn = kFormat == Fp8Format::kE4M3FN;
  if constexpr (kFn) bytes = clear_negative_zeros(bytes);
  // v_cvt_pk_f32_fp8 converts the low (false) or high (true) two bytes; the selector is an immediate. Pairs
  // of fp32 so that the doubling and the scaling are packed instructions (v_pk_add/mul_f32).
  floatx2 low = as_floatx2(__builtin_amdgcn_cvt_pk_f32_fp8(int(bytes), false));
  floatx2 high = as_floatx2(__builtin_amdgcn_cvt_pk_f32_fp8(int(bytes), true));
  // e4m3fn's factor 2, before the scale: doubling the scale instead could overflow where the product does not.
  if constexpr (kFn && !kE4m3fnHalved) {
    low += low;
    high += high;
  }
  low *= scale;
  high *= scale;
  if constexpr (kPowerOfTwoScale) return u32x2{high_halves(low[0], low[1]), high_halves(high[0], high[1])};
  return u32x2{pack_bf16x2_ties_away(low[0], low[1]), pack_bf16x2_ties_away(high[0], high[1])};
}

}  // namespace flash_mla::gfx942
