// sparse_attn_decode on gfx942: the attention kernel over the paged MODEL1 cache (both layouts; each cache in either
// fp8 format).
#include <hip/hip_runtime.h>

#include "gfx942_kernels.h"
#include "launch.h"

namespace flash_mla::gfx942 {
namespace {

// The kernel for the main cache's format kMain and the extra cache's (kMain without an extra cache).
template <Fp8Format kMain>
void launch_for_extra_format(const SparseDecodeParams& params, const SplitKVWorkspace& workspace, hipStream_t stream) {
  const Fp8Format extra = params.num_sources > 1 ? params.sources[1].cache.format : kMain;
  if (extra == Fp8Format::kE4M3FN) {
    launch_attention<SparseKeys<kMain, Fp8Format::kE4M3FN>>(params, workspace, stream);
  } else {
    launch_attention<SparseKeys<kMain, Fp8Format::kE4M3FNUZ>>(params, workspace, stream);
  }
}

}  // namespace

void sparse_attn_decode(const SparseDecodeParams& params, const SplitKVWorkspace& workspace, hipStream_t stream) {
  if (params.sources[0].cache.format == Fp8Format::kE4M3FN) {
    launch_for_extra_format<Fp8Format::kE4M3FN>(params, workspace, stream);
  } else {
    launch_for_extra_format<Fp8Format::kE4M3FNUZ>(params, workspace, stream);
  }
}

}  // namespace flash_mla::gfx942
