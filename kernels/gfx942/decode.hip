// decode on gfx942: the attention kernel over CSR token ranges of separate nope / rope / fp32-scale tensors.
#include <hip/hip_runtime.h>

#include "gfx942_kernels.h"
#include "launch.h"

namespace flash_mla::gfx942 {

void decode(const DecodeParams& params, const SplitKVWorkspace& workspace, hipStream_t stream) {
  with_fp8_format(params.format,
                  [&](auto format) { launch_attention<CsrKeys<decltype(format)::value>>(params, workspace, stream); });
}

}  // namespace flash_mla::gfx942
