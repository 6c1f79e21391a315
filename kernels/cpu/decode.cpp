// decode (CSR ranges) on the CPU: each batch row streams its token range through RowAttention.
#include <ATen/Parallel.h>

#include "attention_core.h"
#include "cpu_kernels.h"

namespace flash_mla::cpu {

void decode(const DecodeParams& p) {
  const std::array<float, 256>& fp8 = fp8_table(p.format);
  at::parallel_for(0, p.batch, 1, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      RowAttention attention(p.q.row(int(b)), p.q.head_stride, p.num_heads, p.sm_scale);
      const TokenRange range = csr_token_range(p.kv_indptr, int(b), p.num_tokens);
      for (int64_t t = range.begin; t < range.end; ++t) {
        dequantize_key(p.kv_nope + t * kNopeDim, p.kv_scales + t * kNumScaleTiles, p.kv_rope + t * kRopeDim, fp8,
                       attention.key_slot());
        attention.push_key();
      }
      attention.write(p.out + b * p.num_heads * kHeadDim, kHeadDim, nullptr, 0, nullptr);
    }
  });
}

}  // namespace flash_mla::cpu
