// The gfx942 (MI300X) backend. Torch-free: the binding layer hands in params, a split workspace and a stream.
#pragma once

#include <hip/hip_runtime.h>

#include "../common/params.h"
#include "../gpu/split_kv.h"

namespace flash_mla::gfx942 {

inline constexpr int kKeysPerTile = 16;  // keys dequantized and multiplied at a time

// Heads of one workgroup: 128 when a row has more than 64, so that each dequantized key feeds twice the MFMAs;
// else 64, so that small head counts (tensor-parallel shards) do not pay for 128.
inline constexpr int heads_per_workgroup(int64_t num_heads) { return num_heads > 64 ? 128 : 64; }

void sparse_attn_decode(const SparseDecodeParams& params, const SplitKVWorkspace& workspace, hipStream_t stream);
void decode(const DecodeParams& params, const SplitKVWorkspace& workspace, hipStream_t stream);

}  // namespace flash_mla::gfx942
