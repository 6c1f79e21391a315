// The Hopper (sm_90a) backend. Torch-free: the binding layer hands in params, a split workspace and a stream.
#pragma once

#include <cuda_runtime.h>

#include "../common/params.h"
#include "../gpu/split_kv.h"

namespace flash_mla::sm90 {

inline constexpr int kHeadsPerCta = 64;  // heads of one CTA
inline constexpr int kKeysPerTile = 64;  // keys dequantized and multiplied at a time

// CTAs that share a query row's heads.
inline constexpr int64_t num_head_groups(int64_t num_heads) { return head_groups(num_heads, kHeadsPerCta); }

void sparse_attn_decode(const SparseDecodeParams& params, const SplitKVWorkspace& workspace, cudaStream_t stream);
void decode(const DecodeParams& params, const SplitKVWorkspace& workspace, cudaStream_t stream);

}  // namespace flash_mla::sm90
