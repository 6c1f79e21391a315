// The op contract, written once: the schemas, the argument checks, the default softmax scale and the output
// shapes. The real ops (every backend) and their meta kernels (what torch.library.opcheck, meta tensors and
// torch.compile run) call the same checks, so a bad argument raises the same TypeError or ValueError, with the same
// message, whatever the tensors are. docs/design.md states the contract in prose.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <tuple>

#include "../common/kv_cache.h"

namespace flash_mla::ops {

inline constexpr const char* kSparseAttnDecodeSchema =
    "sparse_attn_decode(Tensor q, Tensor kv, Tensor indices, Tensor? topk_length=None, float? sm_scale=None, "
    "Tensor? attn_sink=None, Tensor? extra_kv=None, Tensor? extra_indices=None, Tensor? extra_topk_length=None, "
    "str kv_layout=\"token\") -> (Tensor out, Tensor lse)";

inline constexpr const char* kDecodeSchema =
    "decode(Tensor q, Tensor kv_nope_fp8, Tensor kv_rope, Tensor kv_scales, Tensor kv_indptr, int num_heads, "
    "float? sm_scale=None) -> Tensor";

// Raises for a bad argument; the cache layout kv_layout names.
KVLayout check_sparse_attn_decode_args(const at::Tensor& q, const at::Tensor& kv, const at::Tensor& indices,
                                       const std::optional<at::Tensor>& topk_length, std::optional<double> sm_scale,
                                       const std::optional<at::Tensor>& attn_sink,
                                       const std::optional<at::Tensor>& extra_kv,
                                       const std::optional<at::Tensor>& extra_indices,
                                       const std::optional<at::Tensor>& extra_topk_length,
                                       const std::string& kv_layout);

void check_decode_args(const at::Tensor& q, const at::Tensor& kv_nope_fp8, const at::Tensor& kv_rope,
                       const at::Tensor& kv_scales, const at::Tensor& kv_indptr, int64_t num_heads,
                       std::optional<double> sm_scale);

// sm_scale as the kernels take it (float32), 512 ** -0.5 by default; the checks above refuse one that is not finite
// in float32.
float resolve_sm_scale(std::optional<double> sm_scale);

// Uninitialized outputs of the shapes the contract gives: out [b, s_q, h_q, 512] bf16 and lse [b, h_q, s_q] fp32;
// decode's out [B, H, 512] bf16.
std::tuple<at::Tensor, at::Tensor> empty_sparse_attn_decode_outputs(const at::Tensor& q);
at::Tensor empty_decode_output(const at::Tensor& q);

// The meta kernels: the checks, then the outputs' shapes.
std::tuple<at::Tensor, at::Tensor> sparse_attn_decode_meta(
    const at::Tensor& q, const at::Tensor& kv, const at::Tensor& indices, const std::optional<at::Tensor>& topk_length,
    std::optional<double> sm_scale, const std::optional<at::Tensor>& attn_sink,
    const std::optional<at::Tensor>& extra_kv, const std::optional<at::Tensor>& extra_indices,
    const std::optional<at::Tensor>& extra_topk_length, const std::string& kv_layout);

at::Tensor decode_meta(const at::Tensor& q, const at::Tensor& kv_nope_fp8, const at::Tensor& kv_rope,
                       const at::Tensor& kv_scales, const at::Tensor& kv_indptr, int64_t num_heads,
                       std::optional<double> sm_scale);

}  // namespace flash_mla::ops
