// The sm90 backend's table entry: Hopper (compute capability 9.0, the sm_90a code this build holds), splits planned
// for the device's SM count, both ops launched on a CUDA stream.
#include <cuda_runtime.h>

#include "../common/backend.h"
#include "launch.cuh"
#include "sm90_kernels.h"

namespace flash_mla {
namespace {

int device_attribute(cudaDeviceAttr attribute, int device) {
  int value = 0;
  sm90::check_cuda(cudaDeviceGetAttribute(&value, attribute, device), "reading a device attribute");
  return value;
}

bool sm90_supports(int device) {
  return device_attribute(cudaDevAttrComputeCapabilityMajor, device) == 9 &&
         device_attribute(cudaDevAttrComputeCapabilityMinor, device) == 0;
}

template <class Params>
Plan sm90_plan(const Params& params, int device) {
  return plan_split_kv(params, device_attribute(cudaDevAttrMultiProcessorCount, device), sm90::kHeadsPerCta,
                       sm90::kKeysPerTile);
}

}  // namespace

const Backend& sm90_backend() {
  static const Backend backend = {
      "sm90",
      16,
      sm90_supports,
      sm90_plan<SparseDecodeParams>,
      sm90_plan<DecodeParams>,
      [](const SparseDecodeParams& params, const Plan& plan, void* workspace, void* stream) {
        sm90::sparse_attn_decode(params, split_workspace(params, plan, workspace), static_cast<cudaStream_t>(stream));
      },
      [](const DecodeParams& params, const Plan& plan, void* workspace, void* stream) {
        sm90::decode(params, split_workspace(params, plan, workspace), static_cast<cudaStream_t>(stream));
      },
  };
  return backend;
}

}  // namespace flash_mla
