#include <ATen/core/Tensor.h>
#include <c10/core/DeviceGuard.h>

#include "backends.h"
#include "contract.h"
#include "input_checks.h"
#include "ops.h"

namespace flash_mla::ops {
namespace {

// The index lists as the kernels read them, through their batch and token strides: in place when each list's
// entries are contiguous, else a copy.
at::Tensor with_contiguous_lists(const at::Tensor& indices) {
  return indices.size(2) <= 1 || indices.stride(2) == 1 ? indices : indices.contiguous();
}

// A source's lists and lengths, read in place through their strides.
SparseKVSource sparse_source(const PagedKVCache& cache, const at::Tensor& indices,
                             const std::optional<at::Tensor>& topk_length) {
  SparseKVSource source;
  source.cache = cache;
  source.indices = indices.data_ptr<int32_t>();
  source.indices_batch_stride = indices.stride(0);
  source.indices_seq_stride = indices.stride(1);
  if (topk_length) {
    source.topk_length = topk_length->data_ptr<int32_t>();
    source.topk_length_stride = topk_length->stride(0);
  }
  source.topk = int(indices.size(2));
  return source;
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
  const KVLayout layout = check_sparse_attn_decode_args(q, kv, indices, topk_length, sm_scale, attn_sink, extra_kv,
                                                        extra_indices, extra_topk_length, kv_layout);
  const c10::DeviceGuard device_guard(q.device());
  auto [out, lse] = empty_sparse_attn_decode_outputs(q);
  if (out.numel() == 0) return {out, lse};
  const Backend& backend = backend_for(q.device());
  poison_if_requested(out);
  poison_if_requested(lse);

  // Owners of every pointer placed in params, alive until the kernel is done. q, the index lists and the lengths
  // are read in place through their strides wherever the kernels can.
  at::Tensor q_owner;
  const at::Tensor kv_c = with_dense_blocks(kv);
  const at::Tensor indices_c = with_contiguous_lists(indices);
  const at::Tensor sink_c = attn_sink ? attn_sink->contiguous() : at::Tensor();
  const at::Tensor extra_kv_c = extra_kv ? with_dense_blocks(*extra_kv) : at::Tensor();
  const at::Tensor extra_indices_c = extra_indices ? with_contiguous_lists(*extra_indices) : at::Tensor();

  SparseDecodeParams params;
  params.batch = int(q.size(0));
  params.seq_q = int(q.size(1));
  params.num_heads = int(q.size(2));
  params.q = query_rows(q, backend.q_alignment, q_owner);
  params.sources[0] = sparse_source(paged_cache(kv_c, layout), indices_c, topk_length);
  params.num_sources = 1;
  if (extra_kv) {
    params.sources[1] = sparse_source(paged_cache(extra_kv_c, layout), extra_indices_c, extra_topk_length);
    params.num_sources = 2;
  }
  params.sm_scale = resolve_sm_scale(sm_scale);
  params.attn_sink = attn_sink ? sink_c.data_ptr<float>() : nullptr;
  params.out = static_cast<uint16_t*>(out.data_ptr());
  params.lse = lse.data_ptr<float>();
  run_planned(backend, backend.plan_sparse_attn_decode, backend.sparse_attn_decode, params, q.device());
  return {out, lse};
}

}  // namespace flash_mla::ops
