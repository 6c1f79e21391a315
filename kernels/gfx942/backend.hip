// The gfx942 backend's table entry: the targets whose fp8 converter reads e4m3fnuz (gfx940, gfx941, gfx942), splits
// planned for the device's CU count, both ops launched on a HIP stream.
#include <hip/hip_runtime.h>

#include <cstring>

#include "../common/backend.h"
#include "gfx942_kernels.h"
#include "launch.h"

namespace flash_mla {
namespace {

bool gfx942_supports(int device) {
  hipDeviceProp_t properties;
  gfx942::check_hip(hipGetDeviceProperties(&properties, device), "reading the device properties");
  for (const char* arch : {"gfx940", "gfx941", "gfx942"}) {
    const size_t length = std::strlen(arch);
    const char next = properties.gcnArchName[length];  // "gfx942" or "gfx942:sramecc+:xnack-"
    if (std::strncmp(properties.gcnArchName, arch, length) == 0 && (next == '\0' || next == ':')) return true;
  }
  return false;
}

template <class Params>
Plan gfx942_plan(const Params& params, int device) {
  int cus = 0;
  gfx942::check_hip(hipDeviceGetAttribute(&cus, hipDeviceAttributeMultiprocessorCount, device), "reading the CU count");
  return plan_split_kv(params, cus, gfx942::heads_per_workgroup(params.num_heads), gfx942::kKeysPerTile);
}

}  // namespace

const Backend& gfx942_backend() {
  static const Backend backend = {
      "gfx942",
      16,
      gfx942_supports,
      gfx942_plan<SparseDecodeParams>,
      gfx942_plan<DecodeParams>,
      [](const SparseDecodeParams& params, const Plan& plan, void* workspace, void* stream) {
        gfx942::sparse_attn_decode(params, split_workspace(params, plan, workspace), static_cast<hipStream_t>(stream));
      },
      [](const DecodeParams& params, const Plan& plan, void* workspace, void* stream) {
        gfx942::decode(params, split_workspace(params, plan, workspace), static_cast<hipStream_t>(stream));
      },
  };
  return backend;
}

}  // namespace flash_mla
