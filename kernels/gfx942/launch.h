// Launching the attention kernel (and the combine pass when it splits) for one key source.
#pragma once

#include <hip/hip_runtime.h>

#include <stdexcept>
#include <string>
#include <type_traits>

#include "attention_kernel.h"
#include "combine.h"

namespace flash_mla::gfx942 {

inline void check_hip(hipError_t status, const char* what) {
  if (status != hipSuccess)
    throw std::runtime_error(std::string("flash_mla gfx942: ") + what + ": " + hipGetErrorString(status));
}

template <class Keys>
void launch_attention(const typename Keys::Params& params, const SplitKVWorkspace& workspace, hipStream_t stream) {
  const AttentionShape shape = attention_shape(params);
  const AttentionOutputs outputs = attention_outputs(params);
  const int heads = heads_per_workgroup(shape.num_heads);
  const dim3 grid(shape.num_rows, unsigned(head_groups(shape.num_heads, heads)), workspace.num_splits);
  auto launch = [&](auto workgroup) {
    using Shape = decltype(workgroup);
    const auto kernel = attention_kernel<Keys, Shape>;
    hipLaunchKernelGGL(kernel, grid, dim3(Shape::kThreads), 0, stream, params, shape, outputs, workspace);
  };
  if (heads == 128) {
    launch(WorkgroupShape<128>());
  } else {
    launch(WorkgroupShape<64>());
  }
  check_hip(hipGetLastError(), "launching the attention kernel");
  if (workspace.num_splits > 1) {
    launch_combine(workspace, shape.num_rows, shape.num_heads, outputs, stream);
    check_hip(hipGetLastError(), "launching the combine kernel");
  }
}

// Calls run(std::integral_constant<Fp8Format, f>()) for the fp8 format f known at run time: the kernels are
// instantiated per format.
template <class Run>
void with_fp8_format(Fp8Format format, Run&& run) {
  if (format == Fp8Format::kE4M3FN) {
    run(std::integral_constant<Fp8Format, Fp8Format::kE4M3FN>());
  } else {
    run(std::integral_constant<Fp8Format, Fp8Format::kE4M3FNUZ>());
  }
}

}  // namespace flash_mla::gfx942
