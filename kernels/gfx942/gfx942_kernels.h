// The gfx942 (MI300X) backend. Torch-free: the binding layer hands in params, a split workspace and a stream.
#pragma once

#include <hip/hip_runtime.h>

#include "../common/params.h"
#include "../gpu/split_kv.h"

namespace flash_mla::gfx942 {

inline constexpr int kHeadsPerWorkgroup = 64;  // heads of one workgroup
inline constexpr int kKeysPerTile = 16;        // keys dequantized and multiplied at a time

// Workgroups that share a query row's heads.
inline constexpr int64_t num_head_groups(int64_t num_heads) { return head_groups(num_heads, kHeadsPerWorkgroup); }

void sparse_attn_decode(const SparseDecodeParams& params, const SplitKVWorkspace& workspace, hipStream_t stream);
void decode(const DecodeParams& params, const SplitKVWorkspace& workspace, hipStream_t stream);

}  // namespace flash_mla::gfx942
