// The gfx942 attention kernel of both ops: one workgroup of 8 waves = 64 heads x one query row x one split, one
// workgroup per CU (its two key tiles fill the 64 KiB of LDS), two waves per SIMD.
//
// Per tile of 16 keys, every lane dequantizes 4 elements of 4 keys, once for the workgroup, into two LDS copies:
// key rows (the A operand of QK) and value columns (the A operand of PV). Wave w owns one 16-head MFMA block,
// heads 16 (w % 4) .. + 16, and half the dims, 256 (w / 4) .. + 256:
//   QK  S^T[key][head] = K Q^T over its 256 dims (16 MFMAs), plus the partial of wave w ^ 4 (the other half)
//       through LDS; a + b == b + a, so both waves compute the same softmax;
//   PV  O^T[v][head] = V^T P^T for its 256 columns (16 MFMAs); S^T's accumulator layout is P^T's operand layout,
//       so P never leaves registers.
// With transposed products each lane's column is one head: softmax state is per lane, keys run along lanes, and
// lane group g (lanes 16g..16g+15) holds keys 4g..4g+3, the same keys it dequantizes, so it knows which are valid.
// The key tiles are double-buffered and the global loads of tile t + 1 are in flight during tile t. Two barriers
// per tile.
#pragma once

#include <hip/hip_runtime.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "../common/kv_cache.h"
#include "../common/params.h"
#include "../gpu/attention.h"
#include "../gpu/split_kv.h"
#include "gfx942_kernels.h"
#include "key_sources.h"
#include "primitives.h"

namespace flash_mla::gfx942 {

constexpr int kWaves = 8;
constexpr int kThreads = kWaves * kWaveSize;
constexpr int kChunkElements = 8;                         // a 16-byte chunk of a bf16 key row
constexpr int kChunksPerRow = kHeadDim / kChunkElements;  // 64
constexpr int kShareElements = 4;                         // elements of a key one lane dequantizes
constexpr int kKeyQuads = kKeysPerTile / 4;               // an MFMA k-group is 4 keys
constexpr int kHeadBlocks = kHeadsPerWorkgroup / 16;      // 16-head MFMA blocks, one a wave pair
constexpr int kWaveDims = kHeadDim / 2;                   // 256 QK dims and PV columns of a wave
constexpr int kWaveReads = kWaveDims / 32;                // 16-byte A reads (two MFMA k-steps) per wave and GEMM
constexpr int kColumnBlocks = kWaveDims / 16;             // 16-column output blocks of a wave
constexpr float kRescaleThreshold = 8.f;                  // log2 units: unnormalized p stays <= 2^8
static_assert(kKeysPerTile == 16 && kWaves == 2 * kHeadBlocks, "one key block; two waves a head block");
static_assert(kWaves * kWaveSize * kShareElements * 4 == kKeysPerTile * kHeadDim, "each element dequantized once");

// One key tile in LDS, 32 KiB; the workgroup holds two.
struct SharedTiles {
  // Key rows, 64 chunks of 8 bf16 each; chunk c of key r sits at r * 64 + (c ^ r % 8), so the 8 rows one read
  // phase touches at a chunk cover all banks. After QK this space holds the partial-score exchange.
  u32x4 keys[kKeysPerTile * kChunksPerRow];
  // Value columns: the bf16 of keys 4g..4g+3 at column v in one 8-byte word (value_word), so that a PV read of
  // 16 bytes per lane, lanes in order, covers 1 KiB (its 16-byte slots permuted within groups of 8: value_slot).
  u32x2 values[kHeadDim * kKeyQuads];
};
static_assert(2 * sizeof(SharedTiles) == 65536, "two tiles fill the 64 KiB of LDS");

__device__ __forceinline__ int key_chunk_slot(int key, int chunk) { return key * kChunksPerRow + (chunk ^ (key % 8)); }

// Where 16-byte slot `slot` of the value columns is stored: permuted within its aligned group of 8 slots (128 bytes,
// all banks) by bits 3 and 6 of the slot, so that the 8-byte stores of 16 lanes (value_word of 4 lane_rows' 4
// columns, in two 32-column groups) hit 16 distinct bank pairs, while 8 consecutive lanes' PV reads stay in one group.
__device__ __forceinline__ int value_slot(int slot) { return slot ^ (((slot >> 3) & 1) | (((slot >> 6) & 1) << 1)); }

// Word of column v, key quad g: slots of 32-column groups of [g][v % 16], each holding columns v and v + 16.
__device__ __forceinline__ int value_word(int v, int quad) {
  return 2 * value_slot(((v / 32) * kKeyQuads + quad) * 16 + v % 16) + (v / 16) % 2;
}

// A lane's share of one key tile, loaded a tile ahead: elements [first, first + 4) of the keys 4g..4g+3.
struct KeyShare {
  u32x2 data[4];           // nope: the 8 fp8 bytes holding the 4 (word first % 8 / 4); rope: the 4 bf16
  uint32_t scale_bits[4];  // the elements' scale in the nope part, as loaded (Keys::scale_value decodes)
  uint32_t valid;          // bit i: key 4g + i exists and its index is valid; invalid keys stay zeros
  bool in_extra_cache;     // the tile's keys come from the extra cache (wave-uniform)
};

// Lane r of each 4-lane quad locates key 4 quad + r of a tile and shares the addresses with its quad (DPP):
// each key is located once per lane instead of four times. Step 1, a tile ahead of step 2: the key's index
// (negative: no key).
template <class Keys>
__device__ __forceinline__ int32_t fetch_key_index(const Keys& keys, int first_position, int end, int quad, int lane) {
  const int position = first_position + 4 * quad + lane % 4;
  return position < end ? keys.tile(first_position).fetch(position) : -1;
}

// Step 2: the lane's elements [first_element, + 4) of the quad's keys, in the nope part when `nope` (wave-uniform),
// else in the rope part. Every lane issues the same loads, without branches, so nothing waits for them here: 8
// aligned bytes of the key (a nope lane's 4 bytes and their neighbours, inside the nope row) and a scale (a rope
// lane's is not used). A skipped key reads `stand_in` (any 1 KiB of readable memory) instead; the store zeros it.
template <class Keys>
__device__ __forceinline__ KeyShare load_key_share(const Keys& keys, int first_position, int32_t index,
                                                   int first_element, bool nope, const uint8_t* stand_in, int lane) {
  const TokenBytes mine = index >= 0 ? keys.tile(first_position).resolve(index) : TokenBytes{nullptr, nullptr, nullptr};
  const bool mine_valid = mine.nope != nullptr;
  const uint8_t* const my_part = mine_valid ? (nope ? mine.nope : mine.rope) : stand_in;
  const uint8_t* const my_scales = mine_valid ? mine.scales : stand_in;
  const int offset = nope ? first_element & ~7 : 2 * (first_element - kNopeDim);
  const int scale_offset = nope ? first_element / kScaleTileDim * Keys::kScaleBytes : 0;
  KeyShare share = {};
  share.valid = uint32_t(wave_ballot(mine_valid) >> (lane & ~3)) & 0xFu;  // the quad's 4 keys
  share.in_extra_cache = keys.tile(first_position).in_extra_cache;
  auto take = [&](auto source) {  // key `source` of the quad
    constexpr int i = decltype(source)::value;
    share.data[i] = load_unaligned<u32x2>(quad_broadcast<i>(my_part) + offset);
    share.scale_bits[i] = keys.load_scale_bits(quad_broadcast<i>(my_scales) + scale_offset);
  };
  take(std::integral_constant<int, 0>());
  take(std::integral_constant<int, 1>());
  take(std::integral_constant<int, 2>());
  take(std::integral_constant<int, 3>());
  return share;
}

// Element j of 4 keys' 4 bf16 (rows), the keys in order: the word pair of a value column.
__device__ __forceinline__ u32x2 value_column(const u32x2 (&rows)[4], int j) {
  const int word = j / 2;
  return j % 2 == 0
             ? u32x2{pack_low_halves(rows[0][word], rows[1][word]), pack_low_halves(rows[2][word], rows[3][word])}
             : u32x2{pack_high_halves(rows[0][word], rows[1][word]), pack_high_halves(rows[2][word], rows[3][word])};
}

template <class Keys>
__device__ __forceinline__ void store_key_share(const Keys& keys, SharedTiles& lds, const KeyShare& share, int quad,
                                                int first_element, bool nope) {
  const int chunk = first_element / kChunkElements, half = first_element % kChunkElements / kShareElements;
  u32x2 rows[4];
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const u32x2 row =
        nope ? keys.dequant(share.data[i][half], keys.scale_value(share.scale_bits[i]), share.in_extra_cache)
             : share.data[i];
    rows[i] = (share.valid >> i) & 1u ? row : u32x2{0, 0};  // a skipped key read stand-in bytes
  }
#pragma unroll
  for (int i = 0; i < 4; ++i)
    reinterpret_cast<u32x2*>(lds.keys)[2 * key_chunk_slot(4 * quad + i, chunk) + half] = rows[i];
#pragma unroll
  for (int j = 0; j < kShareElements; ++j) {
    lds.values[value_word(first_element + j, quad)] = value_column(rows, j);
  }
}

template <class Keys>
__global__ void __launch_bounds__(kThreads)
    attention_kernel(const typename Keys::Params params, const AttentionShape shape, const AttentionOutputs outputs,
                     const SplitKVWorkspace workspace) {
  __shared__ SharedTiles tiles[2];
  const int row = workgroup_index_x();
  const int split = workgroup_index_z();
  const int wave = wave_index(), lane = lane_index();
  const int lane_row = lane % 16, lane_group = lane / 16;  // MFMA row/column index and k-group of this lane
  const int head_block = wave % kHeadBlocks, dim_half = wave / kHeadBlocks;
  const int head = workgroup_index_y() * kHeadsPerWorkgroup + 16 * head_block + lane_row;  // this lane's column
  // This lane dequantizes elements [share_element, + 4) of keys 4 * lane_group + i: wave w covers 64 elements.
  const int share_element = wave * 64 + lane_row * kShareElements;
  const bool share_in_nope = wave * 64 < kNopeDim;

  const Keys keys(params, row);
  const PositionRange range = split_positions(keys.num_positions(), split, workspace.num_splits, kKeysPerTile);
  const int num_tiles = (range.end - range.begin + kKeysPerTile - 1) / kKeysPerTile;
  auto fetch_tile = [&](int tile) {
    return fetch_key_index(keys, range.begin + tile * kKeysPerTile, range.end, lane_group, lane);
  };
  auto load_tile = [&](int tile, int32_t index) {
    return load_key_share(keys, range.begin + tile * kKeysPerTile, index, share_element, share_in_nope,
                          reinterpret_cast<const uint8_t*>(shape.q.data), lane);
  };

  // Q^T as B operands: this lane's head, dims of chunk c in the same order as the K reads below. Heads past
  // num_heads are zeros and are never written out.
  bf16x4 q[2 * kWaveReads];
  const uint16_t* q_row = shape.q.row(row) + head * shape.q.head_stride;
#pragma unroll
  for (int p = 0; p < kWaveReads; ++p) {
    const int c = dim_half * 32 + 4 * p + lane_group;
    const u32x4 w = head < shape.num_heads ? load_unaligned<u32x4>(q_row + kChunkElements * c) : u32x4{0, 0, 0, 0};
    q[2 * p] = low_bf16x4(w);
    q[2 * p + 1] = high_bf16x4(w);
  }

  floatx4 o[kColumnBlocks] = {};
  float row_max = -INFINITY;  // log2 units
  float row_sum = 0.f;        // this lane's keys only, until the epilogue
  const float scale_log2 = shape.sm_scale * kLog2e;

  // Tile t is in LDS while the key loads of tile t + 1 and the index loads of tile t + 2 are in flight: issued
  // during tile t - 1, they have a PV and a QK to arrive.
  KeyShare next = load_tile(0, fetch_tile(0));  // zeros when there is no tile
  int32_t next_index = fetch_tile(1);           // of the tile after `next`
  store_key_share(keys, tiles[0], next, lane_group, share_element, share_in_nope);
  uint32_t valid = next.valid;  // of the tile in LDS
  next = load_tile(1, next_index);
  next_index = fetch_tile(2);
  workgroup_barrier();
  // Tile `tile` from tiles[kBuffer], the next one stored into the other buffer. kBuffer is a constant (a loop trip
  // runs two tiles), so the buffers' LDS addresses fold into the instructions' offsets.
  auto run_tile = [&](int tile, auto buffer) {
    constexpr int kBuffer = decltype(buffer)::value;
    SharedTiles& lds = tiles[kBuffer];

    floatx4 s = {};
#pragma unroll
    for (int p = 0; p < kWaveReads; ++p) {
      const u32x4 k = lds.keys[key_chunk_slot(lane_row, dim_half * 32 + 4 * p + lane_group)];
      s = mfma_16x16x16_bf16(low_bf16x4(k), q[2 * p], s);
      s = mfma_16x16x16_bf16(high_bf16x4(k), q[2 * p + 1], s);
    }
    workgroup_barrier();  // every wave is done reading this tile's keys; the other buffer is free too
    floatx4* const partials = reinterpret_cast<floatx4*>(lds.keys);  // [wave][lane]
    partials[wave * kWaveSize + lane] = s;
    const uint32_t tile_valid = valid;
    if (tile + 1 < num_tiles) {
      store_key_share(keys, tiles[1 - kBuffer], next, lane_group, share_element, share_in_nope);
      valid = next.valid;
      if (tile + 2 < num_tiles) {
        next = load_tile(tile + 2, next_index);
        next_index = fetch_tile(tile + 3);
      }
    }
    workgroup_barrier();

    s += partials[(wave ^ kHeadBlocks) * kWaveSize + lane];  // the other dim half of the same heads
    float x[4];
    float tile_max = -INFINITY;
#pragma unroll
    for (int e = 0; e < 4; ++e) {  // element e is key 4 * lane_group + e
      x[e] = (tile_valid >> e) & 1u ? s[e] * scale_log2 : -INFINITY;
      tile_max = fmaxf(tile_max, x[e]);
    }
    tile_max = fmaxf(tile_max, shuffle_xor(tile_max, 16));
    tile_max = fmaxf(tile_max, shuffle_xor(tile_max, 32));
    // Lazy rescale: the running max moves (and O, row_sum are rescaled) only when a tile's max exceeds it by
    // kRescaleThreshold; until then p may reach 2^8. Wave-uniform, so the rescale is skipped by the whole wave.
    if (wave_any(tile_max > row_max + kRescaleThreshold)) {
      isa_rare_path();
      const float new_max = fmaxf(row_max, tile_max);
      const float factor = new_max == row_max ? 1.f : fast_exp2(row_max - new_max);
      row_sum *= factor;
#pragma unroll
      for (int n = 0; n < kColumnBlocks; ++n) o[n] *= factor;
      row_max = new_max;
    }
    const float reference = row_max == -INFINITY ? 0.f : row_max;  // no valid key yet: all x are -inf
    float p[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      p[e] = fast_exp2(x[e] - reference);
      row_sum += p[e];
    }
    const bf16x4 p_t = __builtin_bit_cast(bf16x4, u32x2{pack_bf16x2(p[0], p[1]), pack_bf16x2(p[2], p[3])});

#pragma unroll
    for (int c = 0; c < kWaveReads; ++c) {
      const u32x4 v =
          reinterpret_cast<const u32x4*>(lds.values)[value_slot((dim_half * kWaveReads + c) * kWaveSize + lane)];
      o[2 * c] = mfma_16x16x16_bf16(low_bf16x4(v), p_t, o[2 * c]);
      o[2 * c + 1] = mfma_16x16x16_bf16(high_bf16x4(v), p_t, o[2 * c + 1]);
    }
  };
  for (int tile = 0; tile < num_tiles; tile += 2) {
    run_tile(tile, std::integral_constant<int, 0>());
    if (tile + 1 < num_tiles) run_tile(tile + 1, std::integral_constant<int, 1>());
  }

  // The row sum over the 4 lane groups (all lanes take part before any lane leaves).
  row_sum += shuffle_xor(row_sum, 16);
  row_sum += shuffle_xor(row_sum, 32);
  if (head >= shape.num_heads) return;
  const bool final_output = workspace.num_splits == 1;
  const RowEnd end(row_sum, (row_max + fast_log2(row_sum)) * kLn2, final_output, outputs.attn_sink, head);
  const int64_t out_row = int64_t(row) * shape.num_heads + head;
  const int64_t accum_row = (int64_t(split) * shape.num_rows + row) * shape.num_heads + head;
#pragma unroll
  for (int n = 0; n < kColumnBlocks; ++n) {
    const int v = 16 * (dim_half * kColumnBlocks + n) + 4 * lane_group;  // element e is column v + e
    const floatx4 values = o[n] * end.scale;
    if (final_output) {
      store_unaligned(outputs.out + out_row * kHeadDim + v,
                      u32x2{pack_bf16x2(values[0], values[1]), pack_bf16x2(values[2], values[3])});
    } else {
      store_unaligned(workspace.out_accum + accum_row * kHeadDim + v, values);
    }
  }
  if (dim_half == 0 && lane_group == 0) store_row_lse(outputs, workspace, shape, row, head, split, end.stored_lse);
}

}  // namespace flash_mla::gfx942
