// Test-only op that runs the sm90 dequantization primitives (dequant.cuh) on a Hopper GPU, so that the tests can hold
// them to torch's own fp8 conversion bit for bit (tests/test_dequant.py). Built by tests/sm90_checks.py; never part of
// the wheel.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <string>

#include "../dequant.cuh"

namespace flash_mla::sm90 {
namespace {

enum class DequantPath { kFolded, kExact, kF32 };

// Element i: 8 fp8 bytes times scales[i] -> 8 bf16 patterns, by the path the kernels take for such a scale.
__global__ void dequant_kernel(const uint2* words, const float* scales, int64_t count, DequantPath path,
                               Fp8Format format, uint4* out) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  const float scale = scales[i];
  if (path == DequantPath::kFolded) {
    out[i] = dequant_fp8x8_folded(words[i], (__float_as_uint(scale) >> 23) + shift_exponent(format));
  } else if (path == DequantPath::kExact) {
    out[i] = dequant_fp8x8_exact(words[i], scale, format);
  } else {
    out[i] = dequant_fp8x8_f32(words[i], scale, format);
  }
}

// words [n, 2] int32, scales [n] float32 -> [n, 8] int16: the bf16 bit patterns of the 8 values, byte j of the
// 8 bytes in column j. path: "folded" (power-of-two scales whose e8m0 byte + shift fits a bf16 exponent), "exact"
// (any power-of-two scale), "f32" (any positive scale).
at::Tensor dequant_fp8x8(const at::Tensor& words, const at::Tensor& scales, const std::string& path, bool e4m3fn) {
  TORCH_CHECK(words.is_cuda() && words.scalar_type() == at::kInt && words.is_contiguous() && words.dim() == 2 &&
                  words.size(1) == 2,
              "words must be a contiguous CUDA [n, 2] int32 tensor");
  TORCH_CHECK(scales.is_cuda() && scales.scalar_type() == at::kFloat && scales.is_contiguous() && scales.dim() == 1 &&
                  scales.size(0) == words.size(0),
              "scales must be a contiguous CUDA [n] float32 tensor");
  TORCH_CHECK(path == "folded" || path == "exact" || path == "f32", "path must be folded, exact or f32");
  const Fp8Format format = e4m3fn ? Fp8Format::kE4M3FN : Fp8Format::kE4M3FNUZ;
  if (path == "folded") {
    const at::Tensor exponent = scales.view(at::kInt).bitwise_right_shift(23) + shift_exponent(format);
    TORCH_CHECK(exponent.le(254).all().item<bool>(), "folded scales must fit a bf16 exponent");
  }
  const DequantPath kind =
      path == "folded" ? DequantPath::kFolded : (path == "exact" ? DequantPath::kExact : DequantPath::kF32);
  at::Tensor out = at::empty({words.size(0), 8}, words.options().dtype(at::kShort));
  const int64_t count = words.size(0);
  const int threads = 256;
  if (count > 0) {
    dequant_kernel<<<unsigned((count + threads - 1) / threads), threads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        reinterpret_cast<const uint2*>(words.data_ptr()), scales.data_ptr<float>(), count, kind, format,
        reinterpret_cast<uint4*>(out.data_ptr()));
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace
}  // namespace flash_mla::sm90

TORCH_LIBRARY(flash_mla_sm90_checks, m) {
  m.def("dequant_fp8x8(Tensor words, Tensor scales, str path, bool e4m3fn) -> Tensor");
}

TORCH_LIBRARY_IMPL(flash_mla_sm90_checks, CUDA, m) { m.impl("dequant_fp8x8", &flash_mla::sm90::dequant_fp8x8); }
