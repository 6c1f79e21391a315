// The backend contract: what the binding layer (kernels/ops) needs of a backend, as plain function pointers over
// the params structs. A backend says whether it runs on a device, plans a call (how many splits, how much scratch
// memory) from shapes and the device's properties, and runs it. A device is its index and a stream its native
// handle as a void* (null on the CPU), so the binding layer includes no GPU runtime header and names no GPU runtime
// type: torch's hipify has nothing to rewrite in it under a ROCm torch. docs/design.md, "Adding a backend".
#pragma once

#include <cstdint>

#include "params.h"

namespace flash_mla {

// What one call needs besides its inputs and outputs. From shapes and the device's properties only, never from
// tensor values, so that a call is the same allocations and launches whatever the tensors hold (CUDA/HIP-graph
// capturable).
struct Plan {
  int num_splits = 1;           // chunks each query row's keys are cut into (1: no split)
  int64_t workspace_bytes = 0;  // scratch memory the run needs (as aligned as a torch allocation)
};

struct Backend {
  const char* name;
  int q_alignment;  // bytes q's data must be aligned to (the kernels read q rows as vectors this wide)
  bool (*supports)(int device);
  Plan (*plan_sparse_attn_decode)(const SparseDecodeParams& params, int device);
  Plan (*plan_decode)(const DecodeParams& params, int device);
  void (*sparse_attn_decode)(const SparseDecodeParams& params, const Plan& plan, void* workspace, void* stream);
  void (*decode)(const DecodeParams& params, const Plan& plan, void* workspace, void* stream);
};

// The backends, each defined in its folder (backend.cpp / .cu / .hip) and compiled in when setup.py builds it.
const Backend& cpu_backend();
const Backend& sm90_backend();
const Backend& gfx942_backend();

}  // namespace flash_mla
