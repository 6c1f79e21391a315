// The CPU backend: exact fp32 kernels, parallel over query rows. The embedded default of every build.
#pragma once

#include "../common/params.h"

namespace flash_mla::cpu {

void sparse_attn_decode(const SparseDecodeParams& params);
void decode(const DecodeParams& params);

}  // namespace flash_mla::cpu
