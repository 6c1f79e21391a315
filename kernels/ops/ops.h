// The torch-facing ops: check the arguments (contract.h), build the params struct, run the device's backend.
#pragma once

#include <ATen/core/Tensor.h>

#include <optional>
#include <string>
#include <tuple>

namespace flash_mla::ops {

std::tuple<at::Tensor, at::Tensor> sparse_attn_decode(
    const at::Tensor& q, const at::Tensor& kv, const at::Tensor& indices, const std::optional<at::Tensor>& topk_length,
    std::optional<double> sm_scale, const std::optional<at::Tensor>& attn_sink,
    const std::optional<at::Tensor>& extra_kv, const std::optional<at::Tensor>& extra_indices,
    const std::optional<at::Tensor>& extra_topk_length, const std::string& kv_layout);

at::Tensor decode(const at::Tensor& q, const at::Tensor& kv_nope_fp8, const at::Tensor& kv_rope,
                  const at::Tensor& kv_scales, const at::Tensor& kv_indptr, int64_t num_heads,
                  std::optional<double> sm_scale);

// FLASH_MLA_POISON_OUTPUTS=1 (read once) fills every output with NaN before the kernel runs, so a test sees
// any element a kernel fails to write.
void poison_if_requested(at::Tensor& output);

}  // namespace flash_mla::ops
