// fp8 -> bf16 dequantization of 8 values at a time (one 16-byte output chunk of a key row).
//
// The exact shift (docs/design.md, "fp8 facts"): an fp8 byte in the top of a 16-bit lane, its 7 magnitude bits shifted
// right by 4 with the sign kept, reads as bf16 = fp8 value * 2^-120 (e4m3fn) or * 2^-119 (e4m3fnuz), subnormals
// included. The power-of-two e8m0 scale absorbs 2^120 (2^119), so one bf16 multiply finishes the job. fp8 NaN encodings
// become finite values on this path; the CPU backend keeps them NaN.
#pragma once

#include <cstdint>

#include "../common/numerics.h"
#include "primitives.cuh"

namespace flash_mla::sm90 {

// 4 fp8 bytes -> 2 bf16x2 words holding fp8 * 2^-bias_shift (see above).
__device__ __forceinline__ void shift_fp8x4_to_bf16(uint32_t bytes, uint32_t& lo, uint32_t& hi) {
  const uint32_t b01 = __byte_perm(bytes, 0u, 0x1404);  // [0, b0, 0, b1]
  const uint32_t b23 = __byte_perm(bytes, 0u, 0x3424);  // [0, b2, 0, b3]
  lo = (b01 & 0x80008000u) | ((b01 & 0x7F007F00u) >> 4);
  hi = (b23 & 0x80008000u) | ((b23 & 0x7F007F00u) >> 4);
}

// log2 of the factor the shifted value lacks: 120 for e4m3fn, 119 for e4m3fnuz.
__host__ __device__ __forceinline__ int shift_exponent(Fp8Format format) {
  return format == Fp8Format::kE4M3FN ? 120 : 119;
}

// Exact value of each byte times scale, rounded to bf16: the path for scales the fast path cannot fold. Rare, so
// kept out of line: inlined at every chunk it would crowd the instruction cache of the hot path.
static __device__ __noinline__ uint4 dequant_fp8x8_exact(uint2 bytes, float scale, Fp8Format format) {
  uint32_t words[2] = {bytes.x, bytes.y};
  uint32_t out[4];
  for (int w = 0; w < 2; ++w) {
    for (int pair = 0; pair < 2; ++pair) {
      const float lo = fp8_to_float(uint8_t(words[w] >> (16 * pair)), format) * scale;
      const float hi = fp8_to_float(uint8_t(words[w] >> (16 * pair + 8)), format) * scale;
      out[2 * w + pair] = pack_bf16x2(lo, hi);
    }
  }
  return make_uint4(out[0], out[1], out[2], out[3]);
}

// 8 fp8 values of one 64-element tile times 2^(folded_exponent - 127 - shift) -> 8 bf16, exactly. The caller has
// checked that the folded scale (the tile's e8m0 byte + shift_exponent) is a bf16 exponent field (<= 254).
__device__ __forceinline__ uint4 dequant_fp8x8_folded(uint2 bytes, uint32_t folded_exponent) {
  const uint32_t scale2 = folded_exponent * 0x00800080u;  // the folded scale in both bf16 halves
  uint4 out;
  shift_fp8x4_to_bf16(bytes.x, out.x, out.y);
  shift_fp8x4_to_bf16(bytes.y, out.z, out.w);
  out.x = mul_bf16x2(out.x, scale2);
  out.y = mul_bf16x2(out.y, scale2);
  out.z = mul_bf16x2(out.z, scale2);
  out.w = mul_bf16x2(out.w, scale2);
  return out;
}

// 8 fp8 values times an arbitrary positive fp32 scale -> 8 bf16 (one rounding, as the reference's product).
__device__ __forceinline__ uint4 dequant_fp8x8_f32(uint2 bytes, float scale, Fp8Format format) {
  // Undo the 2^-shift in bf16 (exact: the result is the fp8 value itself), widen, scale in fp32, round once.
  const uint32_t unshift2 = uint32_t(127 + shift_exponent(format)) * 0x00800080u;
  uint32_t words[4];
  shift_fp8x4_to_bf16(bytes.x, words[0], words[1]);
  shift_fp8x4_to_bf16(bytes.y, words[2], words[3]);
  uint32_t out[4];
  for (int i = 0; i < 4; ++i) {
    const uint32_t exact = mul_bf16x2(words[i], unshift2);
    out[i] = pack_bf16x2(__uint_as_float(exact << 16) * scale, __uint_as_float(exact & 0xFFFF0000u) * scale);
  }
  return make_uint4(out[0], out[1], out[2], out[3]);
}

}  // namespace flash_mla::sm90
