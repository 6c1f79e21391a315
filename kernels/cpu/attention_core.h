// The CPU attention core shared by both ops: all heads of one query row attend tiles of dequantized keys with
// an online (streaming) softmax in fp32. K = V, so each key is dequantized once and feeds both products.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "../common/kv_cache.h"
#include "../common/numerics.h"

namespace flash_mla::cpu {

constexpr int kKeyTile = 64;  // keys dequantized at a time

// Exact fp32 value of every fp8 byte of one format.
const std::array<float, 256>& fp8_table(Fp8Format format);

// Dequantizes 448 fp8 nope values with their 7 scales and 64 bf16 rope values into one fp32 key.
void dequantize_key(const uint8_t* nope, const float* scales, const uint16_t* rope, const std::array<float, 256>& fp8,
                    float* key);

class RowAttention {
 public:
  // q_row: num_heads heads of 512 bf16 each, head_stride elements apart (one query row).
  RowAttention(const uint16_t* q_row, int64_t head_stride, int num_heads, float sm_scale);

  // Where the next key goes: dequantize it there, then push_key().
  float* key_slot() { return tile_->keys[tile_->count]; }
  void push_key() {
    if (++tile_->count == kKeyTile) attend_tile();
  }

  // out: [num_heads, 512] bf16 at head stride out_head_stride (elements); lse: num_heads values at
  // lse_head_stride (null to skip). attn_sink (null for none) scales head h by 1 / (1 + exp(sink[h] - lse)).
  void write(uint16_t* out, int64_t out_head_stride, float* lse, int64_t lse_head_stride, const float* attn_sink);

 private:
  struct KeyTile {
    alignas(64) float keys[kKeyTile][kHeadDim];  // dequantized keys, fp32
    int count = 0;
  };
  void attend_tile();

  int num_heads_;
  float sm_scale_;
  std::vector<float> q_;        // [num_heads, 512]
  std::vector<float> acc_;      // [num_heads, 512]: sum of p * key, relative to row_max_
  std::vector<float> row_max_;  // [num_heads]: running max score
  std::vector<float> row_sum_;  // [num_heads]: sum of exp(score - row_max_)
  std::vector<float> scores_;   // [kKeyTile]
  std::unique_ptr<KeyTile> tile_;
  int64_t num_keys_ = 0;  // keys attended so far; none gives out = 0 and lse = +inf
};

}  // namespace flash_mla::cpu
