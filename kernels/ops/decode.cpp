#include <ATen/ATen.h>
#include <c10/core/DeviceGuard.h>

#include "backends.h"
#include "input_checks.h"
#include "ops.h"

namespace flash_mla::ops {

at::Tensor decode(const at::Tensor& q, const at::Tensor& kv_nope_fp8, const at::Tensor& kv_rope,
                  const at::Tensor& kv_scales, const at::Tensor& kv_indptr, int64_t num_heads,
                  std::optional<double> sm_scale) {
  constexpr const char* kOp = "flash_mla.decode";
  TORCH_CHECK_VALUE(q.dim() == 3, kOp, ": q must have shape [B, H, 512], got ", shape_string(q));
  const InputChecker check(kOp, q.device());
  const int64_t batch = q.size(0), heads = q.size(1);
  check.tensor(q, "q", {at::kBFloat16}, "[B, H, 512]", {-1, -1, kHeadDim});
  check.value(num_heads == heads,
              "num_heads must equal q.shape[1] = " + std::to_string(heads) + ", got " + std::to_string(num_heads));
  check.tensor(kv_nope_fp8, "kv_nope_fp8", kFp8CacheDtypes, "[T, 448]", {-1, kNopeDim});
  const int64_t tokens = kv_nope_fp8.size(0);
  check.tensor(kv_rope, "kv_rope", {at::kBFloat16}, "[T, 64]", {tokens, kRopeDim});
  check.tensor(kv_scales, "kv_scales", {at::kFloat}, "[T, 7]", {tokens, kNumScaleTiles});
  check.tensor(kv_indptr, "kv_indptr", {at::kInt}, "[B + 1]", {batch + 1});

  const c10::DeviceGuard device_guard(q.device());
  at::Tensor out = at::empty({batch, heads, kHeadDim}, q.options());
  if (out.numel() == 0) return out;
  poison_if_requested(out);

  const at::Tensor q_c = contiguous_aligned16(q);
  const at::Tensor nope_c = kv_nope_fp8.contiguous();
  const at::Tensor rope_c = kv_rope.contiguous();
  const at::Tensor scales_c = kv_scales.contiguous();
  const at::Tensor indptr_c = kv_indptr.contiguous();

  DecodeParams params;
  params.batch = int(batch);
  params.num_heads = int(heads);
  params.num_tokens = tokens;
  params.q = static_cast<const uint16_t*>(q_c.data_ptr());
  params.kv_nope = static_cast<const uint8_t*>(nope_c.data_ptr());
  params.format = fp8_format_of(kv_nope_fp8.scalar_type());
  params.kv_rope = static_cast<const uint16_t*>(rope_c.data_ptr());
  params.kv_scales = scales_c.data_ptr<float>();
  params.kv_indptr = indptr_c.data_ptr<int32_t>();
  params.sm_scale = resolve_sm_scale(sm_scale);
  params.out = static_cast<uint16_t*>(out.data_ptr());
  run_decode(params, q.device());
  return out;
}

}  // namespace flash_mla::ops
