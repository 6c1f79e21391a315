// The flash_mla op schemas, one definition for the extension and the test-only emulation build.
#pragma once

namespace flash_mla::ops {

inline constexpr const char* kSparseAttnDecodeSchema =
    "sparse_attn_decode(Tensor q, Tensor kv, Tensor indices, Tensor? topk_length=None, float? sm_scale=None, "
    "Tensor? attn_sink=None, Tensor? extra_kv=None, Tensor? extra_indices=None, Tensor? extra_topk_length=None, "
    "str kv_layout=\"token\") -> (Tensor out, Tensor lse)";

inline constexpr const char* kDecodeSchema =
    "decode(Tensor q, Tensor kv_nope_fp8, Tensor kv_rope, Tensor kv_scales, Tensor kv_indptr, int num_heads, "
    "float? sm_scale=None) -> Tensor";

}  // namespace flash_mla::ops
