#include "contract.h"

#include <ATen/ops/empty.h>

#include <cmath>

#include "input_checks.h"

namespace flash_mla::ops {
namespace {

constexpr const char* kSparseOp = "flash_mla.sparse_attn_decode";
constexpr const char* kDecodeOp = "flash_mla.decode";
constexpr float kDefaultSmScale = 0.04419417382415922f;  // 512 ** -0.5

void check_sm_scale(const InputChecker& check, std::optional<double> sm_scale) {
  if (sm_scale && !std::isfinite(float(*sm_scale)))
    check.value(false, "sm_scale must be finite in float32 (the kernels' precision), got ", std::to_string(*sm_scale));
}

}  // namespace

KVLayout check_sparse_attn_decode_args(const at::Tensor& q, const at::Tensor& kv, const at::Tensor& indices,
                                       const std::optional<at::Tensor>& topk_length, std::optional<double> sm_scale,
                                       const std::optional<at::Tensor>& attn_sink,
                                       const std::optional<at::Tensor>& extra_kv,
                                       const std::optional<at::Tensor>& extra_indices,
                                       const std::optional<at::Tensor>& extra_topk_length,
                                       const std::string& kv_layout) {
  TORCH_CHECK_VALUE(q.dim() == 4, kSparseOp, ": q must have shape [b, s_q, h_q, 512], got ", shape_string(q));
  const InputChecker check(kSparseOp, q.device());
  const c10::SymInt b = q.sym_size(0), s_q = q.sym_size(1), h_q = q.sym_size(2);
  check.tensor(q, "q", {at::kBFloat16}, "[b, s_q, h_q, 512]", {-1, -1, -1, kHeadDim});
  TORCH_CHECK_VALUE(kv_layout == "token" || kv_layout == "flashmla", kSparseOp,
                    ": kv_layout must be \"token\" or \"flashmla\", got \"", kv_layout, "\"");
  check.tensor(kv, "kv", kFp8CacheDtypes, "[num_blocks, block_size, 1, 584]", {-1, -1, 1, kTokenBytes});
  check.tensor(indices, "indices", {at::kInt}, "[b, s_q, topk]", {b, s_q, -1});
  if (topk_length) check.tensor(*topk_length, "topk_length", {at::kInt}, "[b]", {b});
  check_sm_scale(check, sm_scale);
  if (attn_sink) check.tensor(*attn_sink, "attn_sink", {at::kFloat}, "[h_q]", {h_q});
  check.value(extra_kv.has_value() == extra_indices.has_value(), "extra_kv and extra_indices must be given together");
  check.value(extra_kv.has_value() || !extra_topk_length.has_value(), "extra_topk_length needs extra_kv");
  if (extra_kv) {
    check.tensor(*extra_kv, "extra_kv", kFp8CacheDtypes, "[num_blocks, block_size, 1, 584]", {-1, -1, 1, kTokenBytes});
    check.tensor(*extra_indices, "extra_indices", {at::kInt}, "[b, s_q, extra_topk]", {b, s_q, -1});
    if (extra_topk_length) check.tensor(*extra_topk_length, "extra_topk_length", {at::kInt}, "[b]", {b});
  }
  return kv_layout == "token" ? KVLayout::kToken : KVLayout::kFlashMLA;
}

void check_decode_args(const at::Tensor& q, const at::Tensor& kv_nope_fp8, const at::Tensor& kv_rope,
                       const at::Tensor& kv_scales, const at::Tensor& kv_indptr, int64_t num_heads,
                       std::optional<double> sm_scale) {
  TORCH_CHECK_VALUE(q.dim() == 3, kDecodeOp, ": q must have shape [B, H, 512], got ", shape_string(q));
  const InputChecker check(kDecodeOp, q.device());
  const c10::SymInt batch = q.sym_size(0), heads = q.sym_size(1);
  check.tensor(q, "q", {at::kBFloat16}, "[B, H, 512]", {-1, -1, kHeadDim});
  if (heads != num_heads)
    check.value(false, "num_heads must equal q.shape[1] = ", size_string(heads), ", got ", std::to_string(num_heads));
  check.tensor(kv_nope_fp8, "kv_nope_fp8", kFp8CacheDtypes, "[T, 448]", {-1, kNopeDim});
  const c10::SymInt tokens = kv_nope_fp8.sym_size(0);
  check.tensor(kv_rope, "kv_rope", {at::kBFloat16}, "[T, 64]", {tokens, kRopeDim});
  check.tensor(kv_scales, "kv_scales", {at::kFloat}, "[T, 7]", {tokens, kNumScaleTiles});
  check.tensor(kv_indptr, "kv_indptr", {at::kInt}, "[B + 1]", {batch + 1});
  check_sm_scale(check, sm_scale);
}

float resolve_sm_scale(std::optional<double> sm_scale) { return sm_scale ? float(*sm_scale) : kDefaultSmScale; }

std::tuple<at::Tensor, at::Tensor> empty_sparse_attn_decode_outputs(const at::Tensor& q) {
  const c10::SymInt b = q.sym_size(0), s_q = q.sym_size(1), h_q = q.sym_size(2);
  return {at::empty_symint({b, s_q, h_q, kHeadDim}, q.options()),
          at::empty_symint({b, h_q, s_q}, q.options().dtype(at::kFloat))};
}

at::Tensor empty_decode_output(const at::Tensor& q) { return at::empty_symint(q.sym_sizes(), q.options()); }

std::tuple<at::Tensor, at::Tensor> sparse_attn_decode_meta(
    const at::Tensor& q, const at::Tensor& kv, const at::Tensor& indices, const std::optional<at::Tensor>& topk_length,
    std::optional<double> sm_scale, const std::optional<at::Tensor>& attn_sink,
    const std::optional<at::Tensor>& extra_kv, const std::optional<at::Tensor>& extra_indices,
    const std::optional<at::Tensor>& extra_topk_length, const std::string& kv_layout) {
  check_sparse_attn_decode_args(q, kv, indices, topk_length, sm_scale, attn_sink, extra_kv, extra_indices,
                                extra_topk_length, kv_layout);
  return empty_sparse_attn_decode_outputs(q);
}

at::Tensor decode_meta(const at::Tensor& q, const at::Tensor& kv_nope_fp8, const at::Tensor& kv_rope,
                       const at::Tensor& kv_scales, const at::Tensor& kv_indptr, int64_t num_heads,
                       std::optional<double> sm_scale) {
  check_decode_args(q, kv_nope_fp8, kv_rope, kv_scales, kv_indptr, num_heads, sm_scale);
  return empty_decode_output(q);
}

}  // namespace flash_mla::ops
