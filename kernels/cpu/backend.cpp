// The CPU backend's table entry: each query row in one pass (no splits), on ATen's intra-op threads (no stream).
#include "../common/backend.h"

#include "cpu_kernels.h"

namespace flash_mla {

const Backend& cpu_backend() {
  static const Backend backend = {
      "cpu",
      [](int64_t, int, int64_t, int) { return 1; },
      [](const SparseDecodeParams& params, const SplitKVWorkspace&, void*) { cpu::sparse_attn_decode(params); },
      [](const DecodeParams& params, const SplitKVWorkspace&, void*) { cpu::decode(params); },
  };
  return backend;
}

}  // namespace flash_mla
