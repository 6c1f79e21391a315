// Scalar conversions of the MODEL1 cache's number formats: fp8 (e4m3fn, e4m3fnuz), e8m0 scales, bf16.
// Plain integer/float code, so every backend (and the CPU's lookup tables) decodes bits the same way.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "host_device.h"

namespace flash_mla {

enum class Fp8Format : int {
  kE4M3FNUZ = 0,  // bias 8, max 240, 0x80 = NaN, no -0 (gfx942's native format)
  kE4M3FN = 1,    // bias 7, max 448, 0x7F/0xFF = NaN (Hopper's native format)
};

FMLA_HOST_DEVICE float float_from_bits(uint32_t bits) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(bits);
#elif defined(__HIP_DEVICE_COMPILE__)
  return __builtin_bit_cast(float, bits);
#else
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
#endif
}

FMLA_HOST_DEVICE uint32_t bits_from_float(float value) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(value);
#elif defined(__HIP_DEVICE_COMPILE__)
  return __builtin_bit_cast(uint32_t, value);
#else
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
#endif
}

FMLA_HOST_DEVICE float bf16_bits_to_float(uint16_t bits) { return float_from_bits(uint32_t(bits) << 16); }

// Round to nearest even; NaN stays a (quiet) NaN.
FMLA_HOST_DEVICE uint16_t float_to_bf16_bits(float value) {
  uint32_t bits = bits_from_float(value);
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((bits >> 16) | 0x0040u);
  bits += 0x7FFFu + ((bits >> 16) & 1u);
  return uint16_t(bits >> 16);
}

// e8m0: 2^(byte - 127); 0xFF is NaN. Byte 0 is the fp32 subnormal 2^-127. Both specials are byte << 23 with bit
// 22 set (0x00400000, 0x7FC00000), so the decode is branch-free.
FMLA_HOST_DEVICE float e8m0_to_float(uint8_t byte) {
  const uint32_t special = uint8_t(byte + 1) < 2 ? 0x00400000u : 0u;  // byte 0 or 0xFF
  return float_from_bits((uint32_t(byte) << 23) | special);
}

// Exact value of one fp8 byte. NaN encodings give NaN.
FMLA_HOST_DEVICE float fp8_to_float(uint8_t byte, Fp8Format format) {
  const bool fnuz = format == Fp8Format::kE4M3FNUZ;
  if (fnuz ? byte == 0x80 : (byte & 0x7F) == 0x7F) return float_from_bits(0x7FC00000u);
  const uint32_t exponent = (byte >> 3) & 0xF;
  const uint32_t mantissa = byte & 0x7;
  const int bias = fnuz ? 8 : 7;
  // value = 1.m * 2^(e - bias) for e > 0, 0.m * 2^(1 - bias) for e == 0; build it as fp32 bits.
  float magnitude;
  if (exponent != 0) {
    magnitude = float_from_bits(((exponent - bias + 127) << 23) | (mantissa << 20));
  } else {
    magnitude = float(mantissa) * float_from_bits(uint32_t(127 + 1 - bias - 3) << 23);
  }
  return (byte & 0x80) ? -magnitude : magnitude;
}

// The kernels' softmax runs in base 2: scores times log2(e), the lse back to natural log times ln(2).
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// The attention-sink factor 1 / (1 + exp(sink - lse)) that scales a head's output: +inf sink gives 0, -inf gives 1.
FMLA_HOST_DEVICE float attn_sink_factor(float sink, float lse) { return 1.f / (1.f + expf(sink - lse)); }

}  // namespace flash_mla
