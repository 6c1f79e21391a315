// The sm90 backend's table entry: splits planned for the device's SM count, both ops launched on a CUDA stream.
#include <cuda_runtime.h>

#include "../common/backend.h"
#include "launch.cuh"
#include "sm90_kernels.h"

namespace flash_mla {
namespace {

int sm90_num_splits(int64_t rows, int num_heads, int64_t max_keys, int device) {
  int sms = 0;
  sm90::check_cuda(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device), "reading the SM count");
  return choose_num_splits(rows * sm90::num_head_groups(num_heads), max_keys, sms, sm90::kKeysPerTile);
}

}  // namespace

const Backend& sm90_backend() {
  static const Backend backend = {
      "sm90",
      sm90_num_splits,
      [](const SparseDecodeParams& params, const SplitKVWorkspace& workspace, void* stream) {
        sm90::sparse_attn_decode(params, workspace, static_cast<cudaStream_t>(stream));
      },
      [](const DecodeParams& params, const SplitKVWorkspace& workspace, void* stream) {
        sm90::decode(params, workspace, static_cast<cudaStream_t>(stream));
      },
  };
  return backend;
}

}  // namespace flash_mla
