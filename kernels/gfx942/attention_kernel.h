// The gfx942 attention kernel of both ops: one workgroup of 4 waves = 64 heads x one query row x one split, one
// workgroup per CU (O and Q^T take 192 of a lane's registers, so a SIMD holds one such wave).
//
// Per tile of 16 keys, every lane dequantizes 8 elements of 4 keys, once for the workgroup, into two LDS copies:
// key rows (the A operand of QK) and value columns (the A operand of PV). Wave w owns heads 32 (w % 2) .. + 32 as
// two 16-head MFMA blocks and dims 256 (w / 2) .. + 256:
//   QK  S^T[key][head] = K Q^T over its 256 dims (2 x 16 MFMAs), summed with the partial of wave w ^ 2 via LDS;
//   softmax per head over the tile (both waves of a pair compute the same numbers);
//   PV  O^T[v][head] = V^T P^T for its 256 columns (2 x 16 MFMAs); S^T's accumulator layout is P^T's operand
//       layout, so P never leaves registers.
// With transposed products each lane's column is one head: softmax state is per lane, keys run along lanes.
// The tiles are double-buffered: a wave dequantizes tile t + 1 while the other waves multiply tile t, and the
// global loads of tile t + 2 are in flight meanwhile. Two barriers per tile.
#pragma once

#include <cmath>
#include <cstdint>

#include "../common/kv_cache.h"
#include "../common/params.h"
#include "../common/split_kv.h"
#include "dequant.h"
#include "gfx942_kernels.h"
#include "key_sources.h"
#include "primitives.h"

namespace flash_mla::gfx942 {

constexpr int kWaves = 4;
constexpr int kThreads = kWaves * kWaveSize;
constexpr int kChunkElements = 8;                         // a lane's 16-byte chunk of a bf16 key row
constexpr int kChunksPerRow = kHeadDim / kChunkElements;  // 64
constexpr int kNopeChunks = kNopeDim / kChunkElements;    // 56
constexpr int kKeyQuads = kKeysPerTile / 4;               // an MFMA k-group is 4 keys
constexpr int kHeadBlocks = 2;                            // 16-head MFMA blocks of a wave
constexpr int kWaveDims = kHeadDim / 2;                   // QK dims and PV columns of a wave
constexpr int kWaveChunks = kWaveDims / 32;               // 16-byte A reads (two MFMA k-steps) per wave and GEMM
constexpr int kColumnBlocks = kWaveDims / 16;             // 16-column output blocks of a wave
constexpr float kRescaleThreshold = 8.f;                  // log2 units: unnormalized p stays <= 2^8
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;
static_assert(kKeysPerTile == 16 && kHeadsPerWorkItem == 2 * kHeadBlocks * 16, "one key block, 4 x 16 heads");

// One key tile in LDS, 32 KiB; the workgroup holds two (all of a CU's 64 KiB).
struct SharedTiles {
  // Key rows, 64 chunks of 8 bf16 each; chunk c of key r sits at r * 64 + (c ^ r % 8), so the 8 rows one read
  // phase touches at a chunk cover all banks. After QK this space holds the partial-score exchange.
  u32x4 keys[kKeysPerTile * kChunksPerRow];
  // Value columns: the bf16 of keys 4g..4g+3 at column v in one 8-byte word (value_word), so that a PV read of
  // 16 bytes per lane, lanes in order, is 1 KiB contiguous.
  u32x2 values[kHeadDim * kKeyQuads];
};
static_assert(2 * sizeof(SharedTiles) == 65536, "two tiles fill the 64 KiB of LDS");

__device__ __forceinline__ int key_chunk_slot(int key, int chunk) { return key * kChunksPerRow + (chunk ^ (key % 8)); }

// Word of column v, key quad g: 32-column groups of [g][v % 16][(v / 16) % 2].
__device__ __forceinline__ int value_word(int v, int quad) {
  return (((v / 32) * kKeyQuads + quad) * 16 + v % 16) * 2 + (v / 16) % 2;
}

// A lane's share of one key tile, loaded a tile ahead: chunk `chunk` (8 elements) of the keys 4q..4q+3.
struct KeyShare {
  u32x4 data[4];    // 8 fp8 bytes (words 0, 1) for a nope chunk; 8 bf16 for a rope chunk
  float scale[4];   // the chunk's scale for a nope chunk
  uint32_t valid;   // bit i: key 4q + i exists and its index is valid; invalid keys stay zeros
};

template <class Keys>
__device__ __forceinline__ KeyShare load_key_share(const Keys& keys, int first, int end, int quad, int chunk) {
  KeyShare share = {};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int position = first + 4 * quad + i;
    if (position >= end) continue;
    const KeyLocation key = keys.locate(position);
    if (key.nope == nullptr) continue;
    share.valid |= 1u << i;
    if (chunk < kNopeChunks) {
      const u32x2 bytes = load_unaligned<u32x2>(key.nope + kChunkElements * chunk);
      share.data[i] = u32x4{bytes[0], bytes[1], 0, 0};
      share.scale[i] = keys.tile_scale(key, chunk / (kScaleTileDim / kChunkElements));
    } else {
      share.data[i] = load_unaligned<u32x4>(key.rope + 2 * kChunkElements * (chunk - kNopeChunks));
    }
  }
  return share;
}

// Element j of a row chunk of 8 bf16.
__device__ __forceinline__ uint32_t bf16_element(u32x4 chunk, int j) { return (chunk[j / 2] >> (16 * (j % 2))) & 0xFFFFu; }

template <class Keys>
__device__ __forceinline__ void store_key_share(SharedTiles& lds, const KeyShare& share, int quad, int chunk) {
  u32x4 rows[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    rows[i] = chunk < kNopeChunks ? dequant_fp8x8_to_bf16<Keys::kFormat, Keys::kPowerOfTwoScales>(
                                        u32x2{share.data[i][0], share.data[i][1]}, share.scale[i])
                                  : share.data[i];
    lds.keys[key_chunk_slot(4 * quad + i, chunk)] = rows[i];
  }
#pragma unroll
  for (int j = 0; j < kChunkElements; ++j) {
    lds.values[value_word(kChunkElements * chunk + j, quad)] =
        u32x2{bf16_element(rows[0], j) | bf16_element(rows[1], j) << 16,
              bf16_element(rows[2], j) | bf16_element(rows[3], j) << 16};
  }
}

template <class Keys>
__global__ void __launch_bounds__(kThreads)
    attention_kernel(const typename Keys::Params params, const AttentionShape shape, const AttentionOutputs outputs,
                     const SplitKVWorkspace workspace) {
  __shared__ SharedTiles tiles[2];
  const int row = workgroup_index_x();
  const int split = workgroup_index_z();
  const int wave = thread_index() / kWaveSize, lane = lane_index();
  const int lane_row = lane % 16, lane_group = lane / 16;  // MFMA row/column index and k-group of this lane
  const int head_pair = wave % 2, dim_half = wave / 2;
  const int share_chunk = wave * 16 + lane_row;  // the key chunk this lane dequantizes, for keys 4 * lane_group + i
  const int first_head = workgroup_index_y() * kHeadsPerWorkItem + 32 * head_pair;

  const Keys keys(params, row);
  const PositionRange range = split_positions(keys.num_positions(), split, workspace.num_splits, kKeysPerTile);
  const int num_tiles = (range.end - range.begin + kKeysPerTile - 1) / kKeysPerTile;
  auto load_tile_share = [&](int tile) {
    return load_key_share(keys, range.begin + tile * kKeysPerTile, range.end, lane_group, share_chunk);
  };
  // Q^T as B operands: head lane_row of each block, dims of chunk c in the same order as the K reads below.
  // Heads past num_heads are zeros and are never written out.
  bf16x4 q[kHeadBlocks][2 * kWaveChunks];
#pragma unroll
  for (int hb = 0; hb < kHeadBlocks; ++hb) {
    const int head = first_head + 16 * hb + lane_row;
    const uint16_t* q_row = shape.q + (int64_t(row) * shape.num_heads + head) * kHeadDim;
#pragma unroll
    for (int p = 0; p < kWaveChunks; ++p) {
      const int c = dim_half * 32 + 4 * p + lane_group;
      const u32x4 w = head < shape.num_heads ? load_unaligned<u32x4>(q_row + kChunkElements * c) : u32x4{0, 0, 0, 0};
      q[hb][2 * p] = low_bf16x4(w);
      q[hb][2 * p + 1] = high_bf16x4(w);
    }
  }

  floatx4 o[kHeadBlocks][kColumnBlocks] = {};
  float row_max[kHeadBlocks] = {-INFINITY, -INFINITY};  // log2 units
  float row_sum[kHeadBlocks] = {0.f, 0.f};               // this lane's keys only, until the epilogue
  const float scale_log2 = shape.sm_scale * kLog2e;

  // Tile t is in LDS while the global loads of tile t + 2 are in flight (two dependent loads for sparse keys).
  uint32_t valid;      // of the tile in LDS
  KeyShare next = {};  // tile t + 1, loaded
  const KeyShare first = num_tiles > 0 ? load_tile_share(0) : KeyShare{};
  if (num_tiles > 1) next = load_tile_share(1);
  store_key_share<Keys>(tiles[0], first, lane_group, share_chunk);  // zeros when there is no tile
  valid = first.valid;
  workgroup_barrier();
  for (int tile = 0; tile < num_tiles; ++tile) {
    SharedTiles& lds = tiles[tile % 2];
    const KeyShare after_next = tile + 2 < num_tiles ? load_tile_share(tile + 2) : KeyShare{};

    floatx4 s[kHeadBlocks] = {};
#pragma unroll
    for (int p = 0; p < kWaveChunks; ++p) {
      const u32x4 k = lds.keys[key_chunk_slot(lane_row, dim_half * 32 + 4 * p + lane_group)];
#pragma unroll
      for (int hb = 0; hb < kHeadBlocks; ++hb) {
        s[hb] = mfma_16x16x16_bf16(low_bf16x4(k), q[hb][2 * p], s[hb]);
        s[hb] = mfma_16x16x16_bf16(high_bf16x4(k), q[hb][2 * p + 1], s[hb]);
      }
    }
    workgroup_barrier();  // every wave is done reading this tile's keys; the other buffer is free too
    floatx4* const exchange = reinterpret_cast<floatx4*>(lds.keys);  // [wave][head block][lane]
#pragma unroll
    for (int hb = 0; hb < kHeadBlocks; ++hb) exchange[(wave * kHeadBlocks + hb) * kWaveSize + lane] = s[hb];
    const uint32_t tile_valid = valid;
    if (tile + 1 < num_tiles) {
      store_key_share<Keys>(tiles[(tile + 1) % 2], next, lane_group, share_chunk);
      valid = next.valid;
    }
    next = after_next;
    workgroup_barrier();

    bf16x4 p_t[kHeadBlocks];
#pragma unroll
    for (int hb = 0; hb < kHeadBlocks; ++hb) {
      s[hb] += exchange[((wave ^ 2) * kHeadBlocks + hb) * kWaveSize + lane];  // a + b == b + a: the pair agrees
      float x[4];
      float tile_max = -INFINITY;
#pragma unroll
      for (int e = 0; e < 4; ++e) {  // element e is key 4 * lane_group + e
        x[e] = (tile_valid >> e) & 1u ? s[hb][e] * scale_log2 : -INFINITY;
        tile_max = fmaxf(tile_max, x[e]);
      }
      tile_max = fmaxf(tile_max, shuffle_xor(tile_max, 16));
      tile_max = fmaxf(tile_max, shuffle_xor(tile_max, 32));
      // Lazy rescale: the running max moves (and O, row_sum are rescaled) only when a tile's max exceeds it by
      // kRescaleThreshold; until then p may reach 2^8. Wave-uniform, so the rescale is skipped by the whole wave.
      if (wave_any(tile_max > row_max[hb] + kRescaleThreshold)) {
        isa_rare_path();
        const float new_max = fmaxf(row_max[hb], tile_max);
        const float factor = new_max == row_max[hb] ? 1.f : fast_exp2(row_max[hb] - new_max);
        row_sum[hb] *= factor;
#pragma unroll
        for (int n = 0; n < kColumnBlocks; ++n) o[hb][n] *= factor;
        row_max[hb] = new_max;
      }
      const float reference = row_max[hb] == -INFINITY ? 0.f : row_max[hb];  // no valid key yet: all x are -inf
      float p[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        p[e] = fast_exp2(x[e] - reference);
        row_sum[hb] += p[e];
      }
      p_t[hb] = __builtin_bit_cast(bf16x4, u32x2{pack_bf16x2(p[0], p[1]), pack_bf16x2(p[2], p[3])});
    }

#pragma unroll
    for (int c = 0; c < kWaveChunks; ++c) {
      const u32x4 v = reinterpret_cast<const u32x4*>(lds.values)[(dim_half * kWaveChunks + c) * kWaveSize + lane];
#pragma unroll
      for (int hb = 0; hb < kHeadBlocks; ++hb) {
        o[hb][2 * c] = mfma_16x16x16_bf16(low_bf16x4(v), p_t[hb], o[hb][2 * c]);
        o[hb][2 * c + 1] = mfma_16x16x16_bf16(high_bf16x4(v), p_t[hb], o[hb][2 * c + 1]);
      }
    }
  }

  // Row sums over the 4 lane groups (all lanes take part before any lane leaves).
#pragma unroll
  for (int hb = 0; hb < kHeadBlocks; ++hb) {
    row_sum[hb] += shuffle_xor(row_sum[hb], 16);
    row_sum[hb] += shuffle_xor(row_sum[hb], 32);
  }
  const bool final_output = workspace.num_splits == 1;
#pragma unroll
  for (int hb = 0; hb < kHeadBlocks; ++hb) {
    const int head = first_head + 16 * hb + lane_row;
    if (head >= shape.num_heads) continue;
    const bool empty = row_sum[hb] == 0.f;  // no valid key: the max key alone contributes 1
    const float lse = (row_max[hb] + fast_log2(row_sum[hb])) * kLn2;
    float scale = empty ? 0.f : 1.f / row_sum[hb];
    if (final_output && outputs.attn_sink != nullptr && !empty) scale *= attn_sink_factor(outputs.attn_sink[head], lse);
    const int64_t out_row = int64_t(row) * shape.num_heads + head;
    const int64_t accum_row = (int64_t(split) * shape.num_rows + row) * shape.num_heads + head;
#pragma unroll
    for (int n = 0; n < kColumnBlocks; ++n) {
      const int v = 16 * (dim_half * kColumnBlocks + n) + 4 * lane_group;  // element e is column v + e
      const floatx4 values = o[hb][n] * scale;
      if (final_output) {
        store_unaligned(outputs.out + out_row * kHeadDim + v,
                        u32x2{pack_bf16x2(values[0], values[1]), pack_bf16x2(values[2], values[3])});
      } else {
        store_unaligned(workspace.out_accum + accum_row * kHeadDim + v, values);
      }
    }
    if (dim_half == 0 && lane_group == 0) {
      if (!final_output) {
        workspace.lse_accum[accum_row] = empty ? -INFINITY : lse;
      } else if (outputs.lse != nullptr) {
        outputs.lse[outputs.lse_offset(row, head, shape.num_heads)] = empty ? INFINITY : lse;
      }
    }
  }
}

}  // namespace flash_mla::gfx942
