// The gfx942 backend's table entry: splits planned for the device's CU count, both ops launched on a HIP stream.
#include <hip/hip_runtime.h>

#include "../common/backend.h"
#include "gfx942_kernels.h"
#include "launch.h"

namespace flash_mla {
namespace {

int gfx942_num_splits(int64_t rows, int num_heads, int64_t max_keys, int device) {
  int cus = 0;
  gfx942::check_hip(hipDeviceGetAttribute(&cus, hipDeviceAttributeMultiprocessorCount, device), "reading the CU count");
  return choose_num_splits(rows * gfx942::num_head_groups(num_heads), max_keys, cus, gfx942::kKeysPerTile);
}

}  // namespace

const Backend& gfx942_backend() {
  static const Backend backend = {
      "gfx942",
      gfx942_num_splits,
      [](const SparseDecodeParams& params, const SplitKVWorkspace& workspace, void* stream) {
        gfx942::sparse_attn_decode(params, workspace, static_cast<hipStream_t>(stream));
      },
      [](const DecodeParams& params, const SplitKVWorkspace& workspace, void* stream) {
        gfx942::decode(params, workspace, static_cast<hipStream_t>(stream));
      },
  };
  return backend;
}

}  // namespace flash_mla
