#include "attention_core.h"

#include <cmath>
#include <limits>

namespace flash_mla::cpu {
namespace {

std::array<float, 256> make_fp8_table(Fp8Format format) {
  std::array<float, 256> table{};
  for (int byte = 0; byte < 256; ++byte) table[byte] = fp8_to_float(uint8_t(byte), format);
  return table;
}

float dot(const float* a, const float* b) {
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int i = 0; i < kHeadDim; ++i) sum += a[i] * b[i];
  return sum;
}

}  // namespace

const std::array<float, 256>& fp8_table(Fp8Format format) {
  static const std::array<float, 256> fnuz = make_fp8_table(Fp8Format::kE4M3FNUZ);
  static const std::array<float, 256> fn = make_fp8_table(Fp8Format::kE4M3FN);
  return format == Fp8Format::kE4M3FNUZ ? fnuz : fn;
}

void dequantize_key(const uint8_t* nope, const float* scales, const uint16_t* rope, const std::array<float, 256>& fp8,
                    float* key) {
  for (int tile = 0; tile < kNumScaleTiles; ++tile) {
    const float scale = scales[tile];
    for (int i = tile * kScaleTileDim; i < (tile + 1) * kScaleTileDim; ++i) key[i] = fp8[nope[i]] * scale;
  }
  for (int i = 0; i < kRopeDim; ++i) key[kNopeDim + i] = bf16_bits_to_float(rope[i]);
}

RowAttention::RowAttention(const uint16_t* q_row, int64_t head_stride, int num_heads, float sm_scale)
    : num_heads_(num_heads),
      sm_scale_(sm_scale),
      q_(size_t(num_heads) * kHeadDim),
      acc_(size_t(num_heads) * kHeadDim, 0.f),
      row_max_(num_heads, -std::numeric_limits<float>::infinity()),
      row_sum_(num_heads, 0.f),
      scores_(kKeyTile),
      tile_(std::make_unique<KeyTile>()) {
  for (int h = 0; h < num_heads; ++h)
    for (int i = 0; i < kHeadDim; ++i) q_[size_t(h) * kHeadDim + i] = bf16_bits_to_float(q_row[h * head_stride + i]);
}

void RowAttention::attend_tile() {
  const KeyTile& tile = *tile_;
  num_keys_ += tile.count;
  for (int h = 0; h < num_heads_; ++h) {
    const float* q = &q_[size_t(h) * kHeadDim];
    float tile_max = -std::numeric_limits<float>::infinity();
    for (int k = 0; k < tile.count; ++k) {
      scores_[k] = sm_scale_ * dot(q, tile.keys[k]);
      tile_max = std::fmax(tile_max, scores_[k]);
    }
    const float new_max = std::fmax(row_max_[h], tile_max);
    // Keep -inf - -inf out of exp: a head whose scores are all -inf has nothing to rescale.
    const float reference = std::isinf(new_max) ? 0.f : new_max;
    const float rescale = std::exp(row_max_[h] - reference);
    float* acc = &acc_[size_t(h) * kHeadDim];
    if (rescale != 1.f) {
      for (int i = 0; i < kHeadDim; ++i) acc[i] *= rescale;
    }
    float sum = row_sum_[h] * rescale;
    for (int k = 0; k < tile.count; ++k) {
      const float p = std::exp(scores_[k] - reference);
      sum += p;
      const float* key = tile.keys[k];
#pragma omp simd
      for (int i = 0; i < kHeadDim; ++i) acc[i] += p * key[i];
    }
    row_max_[h] = new_max;
    row_sum_[h] = sum;
  }
  tile_->count = 0;
}

void RowAttention::write(uint16_t* out, int64_t out_head_stride, float* lse, int64_t lse_head_stride,
                         const float* attn_sink) {
  if (tile_->count > 0) attend_tile();
  const bool empty = num_keys_ == 0;
  for (int h = 0; h < num_heads_; ++h) {
    uint16_t* out_h = out + h * out_head_stride;
    const float* acc = &acc_[size_t(h) * kHeadDim];
    const float head_lse = empty ? std::numeric_limits<float>::infinity() : row_max_[h] + std::log(row_sum_[h]);
    float norm = empty ? 0.f : 1.f / row_sum_[h];
    if (attn_sink != nullptr && !empty) norm *= attn_sink_factor(attn_sink[h], head_lse);
    for (int i = 0; i < kHeadDim; ++i) out_h[i] = float_to_bf16_bits(empty ? 0.f : acc[i] * norm);
    if (lse != nullptr) lse[h * lse_head_stride] = head_lse;
  }
}

}  // namespace flash_mla::cpu
