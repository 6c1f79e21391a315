// What the binding layer (kernels/ops) needs of a backend: how to plan a call and how to run it, as plain function
// pointers over the params structs. A device is its index and a stream its native handle as a void* (null on the
// CPU), so the binding layer includes no GPU runtime header and names no GPU runtime type: torch's hipify has
// nothing to rewrite in it under a ROCm torch.
#pragma once

#include <cstdint>

#include "params.h"
#include "split_kv.h"

namespace flash_mla {

struct Backend {
  const char* name;
  // Splits of each query row's keys for `rows` rows of `num_heads` heads over at most `max_keys` keys a row, on
  // device `device`: from shapes and the device's properties only, never from tensor values, so that a call is the
  // same launches whatever the tensors hold (CUDA/HIP-graph capturable). 1 = no split, no workspace.
  int (*num_splits)(int64_t rows, int num_heads, int64_t max_keys, int device);
  void (*sparse_attn_decode)(const SparseDecodeParams& params, const SplitKVWorkspace& workspace, void* stream);
  void (*decode)(const DecodeParams& params, const SplitKVWorkspace& workspace, void* stream);
};

// The backends; each is defined in its folder and compiled in when setup.py builds it (the CPU one always).
const Backend& cpu_backend();
const Backend& sm90_backend();
const Backend& gfx942_backend();

}  // namespace flash_mla
