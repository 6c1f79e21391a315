// Test-only ops that run single gfx942 primitives under emulation on one wave, so that the tests can hold the
// emulated wave-wide instructions to the CDNA3 ISA's definitions directly, apart from any kernel (a kernel and an
// emulation that were wrong the same way would still agree with each other), and the dequantization and the bf16
// rounding to torch's own conversions, bit for bit.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <type_traits>

#include "../dequant.h"
#include "../primitives.h"

namespace flash_mla::gfx942 {
namespace {

// Per lane: 4 bf16 of A, 4 bf16 of B and 4 fp32 of C in, the 4 fp32 of D = A B + C out.
__global__ void mfma_lanes_kernel(const int16_t* a, const int16_t* b, const float* c, float* d) {
  const int lane = lane_index();
  bf16x4 a_lane, b_lane;
  floatx4 c_lane;
  for (int e = 0; e < 4; ++e) {
    a_lane[e] = a[4 * lane + e];
    b_lane[e] = b[4 * lane + e];
    c_lane[e] = c[4 * lane + e];
  }
  const floatx4 d_lane = mfma_16x16x16_bf16(a_lane, b_lane, c_lane);
  for (int e = 0; e < 4; ++e) d[4 * lane + e] = d_lane[e];
}

// Per lane: shuffle_xor by 16 and by 32, quad_broadcast of lane 2 of the quad.
__global__ void shuffles_kernel(const int32_t* values, int32_t* out) {
  const int lane = lane_index();
  const float value = __builtin_bit_cast(float, values[lane]);
  out[lane] = __builtin_bit_cast(int32_t, shuffle_xor(value, 16));
  out[kWaveSize + lane] = __builtin_bit_cast(int32_t, shuffle_xor(value, 32));
  out[2 * kWaveSize + lane] = int32_t(quad_broadcast<2>(uint32_t(values[lane])));
}

// Word i: 4 fp8 bytes times scales[i] -> 4 bf16 patterns (dequant_fp8x4_to_bf16); the lanes stride over the words.
template <Fp8Format kFormat, bool kPowerOfTwoScale, bool kE4m3fnHalved>
__global__ void dequant_kernel(const int32_t* words, const float* scales, int64_t count, u32x2* out) {
  for (int64_t i = lane_index(); i < count; i += kWaveSize)
    out[i] = dequant_fp8x4_to_bf16<kFormat, kPowerOfTwoScale, kE4m3fnHalved>(uint32_t(words[i]), scales[i]);
}

// Pair i of values -> two bf16 patterns: by pack_bf16x2 into out[i], by pack_bf16x2_ties_away into out[pairs + i].
__global__ void pack_bf16_kernel(const float* values, int64_t pairs, uint32_t* out) {
  for (int64_t i = lane_index(); i < pairs; i += kWaveSize) {
    out[i] = pack_bf16x2(values[2 * i], values[2 * i + 1]);
    out[pairs + i] = pack_bf16x2_ties_away(values[2 * i], values[2 * i + 1]);
  }
}

void check_lanes(const at::Tensor& t, const char* name, at::ScalarType dtype) {
  TORCH_CHECK(t.scalar_type() == dtype && t.is_contiguous() && t.dim() == 2 && t.size(0) == kWaveSize && t.size(1) == 4,
              name, " must be a contiguous [64, 4] ", c10::toString(dtype), " tensor");
}

at::Tensor mfma_lanes(const at::Tensor& a, const at::Tensor& b, const at::Tensor& c) {
  check_lanes(a, "a", at::kShort);
  check_lanes(b, "b", at::kShort);
  check_lanes(c, "c", at::kFloat);
  at::Tensor d = at::empty_like(c);
  hipLaunchKernelGGL(mfma_lanes_kernel, dim3(1), dim3(kWaveSize), 0, nullptr, a.data_ptr<int16_t>(),
                     b.data_ptr<int16_t>(), c.data_ptr<float>(), d.data_ptr<float>());
  return d;
}

at::Tensor shuffles(const at::Tensor& values) {
  TORCH_CHECK(values.scalar_type() == at::kInt && values.is_contiguous() && values.numel() == kWaveSize,
              "values must be 64 contiguous int32");
  at::Tensor out = at::empty({3, kWaveSize}, values.options());
  hipLaunchKernelGGL(shuffles_kernel, dim3(1), dim3(kWaveSize), 0, nullptr, values.data_ptr<int32_t>(),
                     out.data_ptr<int32_t>());
  return out;
}

// words [n] int32, scales [n] float32 -> [n, 4] int16: the bf16 bit patterns of the 4 values, byte j of word i in
// column j. e4m3fn_halved: e4m3fn values at half their value (dequant_fp8x4_to_bf16's kE4m3fnHalved).
at::Tensor dequant_fp8x4(const at::Tensor& words, const at::Tensor& scales, bool e4m3fn, bool power_of_two_scale,
                         bool e4m3fn_halved) {
  TORCH_CHECK(words.scalar_type() == at::kInt && words.is_contiguous() && words.dim() == 1,
              "words must be a contiguous [n] int32 tensor");
  TORCH_CHECK(scales.scalar_type() == at::kFloat && scales.is_contiguous() && scales.sizes() == words.sizes(),
              "scales must be a contiguous float32 tensor of words' shape");
  TORCH_CHECK(e4m3fn || !e4m3fn_halved, "e4m3fn_halved is for e4m3fn bytes");
  at::Tensor out = at::empty({words.size(0), 4}, words.options().dtype(at::kShort));
  auto launch = [&](auto kernel) {
    hipLaunchKernelGGL(kernel, dim3(1), dim3(kWaveSize), 0, nullptr, words.data_ptr<int32_t>(),
                       scales.data_ptr<float>(), words.size(0), reinterpret_cast<u32x2*>(out.data_ptr()));
  };
  auto launch_power_of_two = [&](auto format, auto halved) {
    constexpr Fp8Format kFormat = decltype(format)::value;
    constexpr bool kHalved = decltype(halved)::value;
    power_of_two_scale ? launch(dequant_kernel<kFormat, true, kHalved>)
                       : launch(dequant_kernel<kFormat, false, kHalved>);
  };
  using Fn = std::integral_constant<Fp8Format, Fp8Format::kE4M3FN>;
  using Fnuz = std::integral_constant<Fp8Format, Fp8Format::kE4M3FNUZ>;
  if (!e4m3fn) {
    launch_power_of_two(Fnuz(), std::false_type());
  } else if (e4m3fn_halved) {
    launch_power_of_two(Fn(), std::true_type());
  } else {
    launch_power_of_two(Fn(), std::false_type());
  }
  return out;
}

// values [2 n] float32 -> [2, 2 n] int16: the bf16 patterns by round-to-nearest-even (row 0) and by
// round-to-nearest with ties away from zero (row 1).
at::Tensor pack_bf16(const at::Tensor& values) {
  TORCH_CHECK(
      values.scalar_type() == at::kFloat && values.is_contiguous() && values.dim() == 1 && values.size(0) % 2 == 0,
      "values must be a contiguous float32 tensor of even length");
  at::Tensor out = at::empty({2, values.size(0)}, values.options().dtype(at::kShort));
  hipLaunchKernelGGL(pack_bf16_kernel, dim3(1), dim3(kWaveSize), 0, nullptr, values.data_ptr<float>(),
                     values.size(0) / 2, reinterpret_cast<uint32_t*>(out.data_ptr()));
  return out;
}

}  // namespace
}  // namespace flash_mla::gfx942

TORCH_LIBRARY_FRAGMENT(flash_mla_gfx942_emulated, m) {
  m.def("mfma_16x16x16_bf16_lanes(Tensor a, Tensor b, Tensor c) -> Tensor");
  m.def("lane_shuffles(Tensor values) -> Tensor");
  m.def(
      "dequant_fp8x4(Tensor words, Tensor scales, bool e4m3fn, bool power_of_two_scale, bool e4m3fn_halved) -> Tensor");
  m.def("pack_bf16(Tensor values) -> Tensor");
}

TORCH_LIBRARY_IMPL(flash_mla_gfx942_emulated, CPU, m) {
  m.impl("mfma_16x16x16_bf16_lanes", &flash_mla::gfx942::mfma_lanes);
  m.impl("lane_shuffles", &flash_mla::gfx942::shuffles);
  m.impl("dequant_fp8x4", &flash_mla::gfx942::dequant_fp8x4);
  m.impl("pack_bf16", &flash_mla::gfx942::pack_bf16);
}
