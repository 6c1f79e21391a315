#include <ATen/core/Tensor.h>
#include <c10/core/DeviceGuard.h>

#include "backends.h"
#include "contract.h"
#include "input_checks.h"
#include "ops.h"

namespace flash_mla::ops {

at::Tensor decode(const at::Tensor& q, const at::Tensor& kv_nope_fp8, const at::Tensor& kv_rope,
                  const at::Tensor& kv_scales, const at::Tensor& kv_indptr, int64_t num_heads,
                  std::optional<double> sm_scale) {
  check_decode_args(q, kv_nope_fp8, kv_rope, kv_scales, kv_indptr, num_heads, sm_scale);
  const c10::DeviceGuard device_guard(q.device());
  at::Tensor out = empty_decode_output(q);
  if (out.numel() == 0) return out;
  const Backend& backend = backend_for(q.device());
  poison_if_requested(out);

  at::Tensor q_owner;
  const at::Tensor nope_c = kv_nope_fp8.contiguous();
  const at::Tensor rope_c = kv_rope.contiguous();
  const at::Tensor scales_c = kv_scales.contiguous();
  const at::Tensor indptr_c = kv_indptr.contiguous();

  DecodeParams params;
  params.batch = int(q.size(0));
  params.num_heads = int(q.size(1));
  params.num_tokens = kv_nope_fp8.size(0);
  params.q = query_rows(q, backend.q_alignment, q_owner);
  params.kv_nope = static_cast<const uint8_t*>(nope_c.data_ptr());
  params.format = fp8_format_of(kv_nope_fp8.scalar_type());
  params.kv_rope = static_cast<const uint16_t*>(rope_c.data_ptr());
  params.kv_scales = scales_c.data_ptr<float>();
  params.kv_indptr = indptr_c.data_ptr<int32_t>();
  params.sm_scale = resolve_sm_scale(sm_scale);
  params.out = static_cast<uint16_t*>(out.data_ptr());
  run_planned(backend, backend.plan_decode, backend.decode, params, q.device());
  return out;
}

}  // namespace flash_mla::ops
