#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>

#include "backends.h"
#include "input_checks.h"
#include "ops.h"

namespace flash_mla::ops {
namespace {

constexpr const char* kOp = "flash_mla.sparse_attn_decode";

KVLayout parse_kv_layout(const std::string& kv_layout) {
  TORCH_CHECK_VALUE(kv_layout == "token" || kv_layout == "flashmla", kOp,
                    ": kv_layout must be \"token\" or \"flashmla\", got \"", kv_layout, "\"");
  return kv_layout == "token" ? KVLayout::kToken : KVLayout::kFlashMLA;
}

// The kernels read each block's block_size * 584 bytes as one dense run at kv.stride(0); any other view is copied.
at::Tensor with_dense_blocks(const at::Tensor& kv) {
  const bool dense = kv.stride(3) == 1 && (kv.size(1) <= 1 || kv.stride(1) == kTokenBytes);
  return dense ? kv : kv.contiguous();
}

PagedKVCache paged_cache(const at::Tensor& kv, KVLayout layout) {
  PagedKVCache cache;
  cache.data = static_cast<const uint8_t*>(kv.data_ptr());
  cache.block_stride = kv.stride(0);
  cache.block_size = FastDivisor(uint32_t(std::max<int64_t>(kv.size(1), 1)));  // 0 tokens a block: no valid index
  cache.num_tokens = kv.size(0) * kv.size(1);
  cache.layout = layout;
  cache.format = fp8_format_of(kv.scalar_type());
  return cache;
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> sparse_attn_decode(
    const at::Tensor& q, const at::Tensor& kv, const at::Tensor& indices, const std::optional<at::Tensor>& topk_length,
    std::optional<double> sm_scale, const std::optional<at::Tensor>& attn_sink,
    const std::optional<at::Tensor>& extra_kv, const std::optional<at::Tensor>& extra_indices,
    const std::optional<at::Tensor>& extra_topk_length, const std::string& kv_layout) {
  TORCH_CHECK_VALUE(q.dim() == 4, kOp, ": q must have shape [b, s_q, h_q, 512], got ", shape_string(q));
  const InputChecker check(kOp, q.device());
  const int64_t b = q.size(0), s_q = q.size(1), h_q = q.size(2);
  check.tensor(q, "q", {at::kBFloat16}, "[b, s_q, h_q, 512]", {-1, -1, -1, kHeadDim});
  const KVLayout layout = parse_kv_layout(kv_layout);
  check.tensor(kv, "kv", kFp8CacheDtypes, "[num_blocks, block_size, 1, 584]", {-1, -1, 1, kTokenBytes});
  check.tensor(indices, "indices", {at::kInt}, "[b, s_q, topk]", {b, s_q, -1});
  if (topk_length) check.tensor(*topk_length, "topk_length", {at::kInt}, "[b]", {b});
  if (attn_sink) check.tensor(*attn_sink, "attn_sink", {at::kFloat}, "[h_q]", {h_q});
  check.value(extra_kv.has_value() == extra_indices.has_value(), "extra_kv and extra_indices must be given together");
  check.value(extra_kv.has_value() || !extra_topk_length.has_value(), "extra_topk_length needs extra_kv");
  if (extra_kv) {
    check.tensor(*extra_kv, "extra_kv", kFp8CacheDtypes, "[num_blocks, block_size, 1, 584]", {-1, -1, 1, kTokenBytes});
    check.value(extra_kv->scalar_type() == kv.scalar_type(),
                "extra_kv must have the dtype of kv (" + std::string(c10::toString(kv.scalar_type())) + ")");
    check.tensor(*extra_indices, "extra_indices", {at::kInt}, "[b, s_q, extra_topk]", {b, s_q, -1});
    if (extra_topk_length) check.tensor(*extra_topk_length, "extra_topk_length", {at::kInt}, "[b]", {b});
  }

  const c10::DeviceGuard device_guard(q.device());
  at::Tensor out = at::empty({b, s_q, h_q, kHeadDim}, q.options());
  at::Tensor lse = at::empty({b, h_q, s_q}, q.options().dtype(at::kFloat));
  if (out.numel() == 0) return {out, lse};
  poison_if_requested(out);
  poison_if_requested(lse);

  // Owners of every pointer placed in params, alive until the kernel is done.
  const at::Tensor q_c = contiguous_aligned16(q);
  const at::Tensor kv_c = with_dense_blocks(kv);
  const at::Tensor indices_c = indices.contiguous();
  const at::Tensor topk_length_c = topk_length ? topk_length->contiguous() : at::Tensor();
  const at::Tensor sink_c = attn_sink ? attn_sink->contiguous() : at::Tensor();
  const at::Tensor extra_kv_c = extra_kv ? with_dense_blocks(*extra_kv) : at::Tensor();
  const at::Tensor extra_indices_c = extra_indices ? extra_indices->contiguous() : at::Tensor();
  const at::Tensor extra_topk_length_c = extra_topk_length ? extra_topk_length->contiguous() : at::Tensor();

  SparseDecodeParams params;
  params.batch = int(b);
  params.seq_q = int(s_q);
  params.num_heads = int(h_q);
  params.q = static_cast<const uint16_t*>(q_c.data_ptr());
  params.sources[0] = {paged_cache(kv_c, layout), indices_c.data_ptr<int32_t>(),
                       topk_length ? topk_length_c.data_ptr<int32_t>() : nullptr, int(indices.size(2))};
  params.num_sources = 1;
  if (extra_kv) {
    params.sources[1] = {paged_cache(extra_kv_c, layout), extra_indices_c.data_ptr<int32_t>(),
                         extra_topk_length ? extra_topk_length_c.data_ptr<int32_t>() : nullptr,
                         int(extra_indices->size(2))};
    params.num_sources = 2;
  }
  params.sm_scale = resolve_sm_scale(sm_scale);
  params.attn_sink = attn_sink ? sink_c.data_ptr<float>() : nullptr;
  params.out = static_cast<uint16_t*>(out.data_ptr());
  params.lse = lse.data_ptr<float>();
  run_sparse_attn_decode(params, q.device());
  return {out, lse};
}

}  // namespace flash_mla::ops
