// The CPU backend's table entry: any CPU, each query row in one pass (no splits, no workspace), on ATen's
// intra-op threads (no stream).
#include "../common/backend.h"

#include "cpu_kernels.h"

namespace flash_mla {

const Backend& cpu_backend() {
  static const Backend backend = {
      "cpu",
      alignof(uint16_t),
      [](int) { return true; },
      [](const SparseDecodeParams&, int) { return Plan{}; },
      [](const DecodeParams&, int) { return Plan{}; },
      [](const SparseDecodeParams& params, const Plan&, void*, void*) { cpu::sparse_attn_decode(params); },
      [](const DecodeParams& params, const Plan&, void*, void*) { cpu::decode(params); },
  };
  return backend;
}

}  // namespace flash_mla
