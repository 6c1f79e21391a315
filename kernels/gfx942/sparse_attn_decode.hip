// sparse_attn_decode on gfx942: the attention kernel over the paged MODEL1 cache (both layouts; each cache in either
// fp8 format).
#include <hip/hip_runtime.h>

#include "gfx942_kernels.h"
#include "launch.h"

namespace flash_mla::gfx942 {

// A kernel for each (main, extra) pair of cache formats (without an extra cache, the main cache's format twice).
void sparse_attn_decode(const SparseDecodeParams& params, const SplitKVWorkspace& workspace, hipStream_t stream) {
  const Fp8Format main = params.sources[0].cache.format;
  const Fp8Format extra = params.num_sources > 1 ? params.sources[1].cache.format : main;
  with_fp8_format(main, [&](auto main_format) {
    with_fp8_format(extra, [&](auto extra_format) {
      launch_attention<SparseKeys<decltype(main_format)::value, decltype(extra_format)::value>>(params, workspace,
                                                                                                stream);
    });
  });
}

}  // namespace flash_mla::gfx942
