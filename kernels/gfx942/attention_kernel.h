// The gfx942 attention kernel of both ops: one workgroup of 8 waves = 64 or 128 heads (WorkgroupShape) x one query
// row x one split, one workgroup per CU (its two key tiles fill the 64 KiB of LDS), two waves per SIMD.
//
// Per tile of 16 keys, every lane dequantizes 4 elements of 4 keys, once for the workgroup, into two LDS copies:
// key rows (the A operand of QK) and value columns (the A operand of PV). Waves w and w ^ 4 (a wave pair) hold the
// same one or two 16-head MFMA blocks, heads 16 (w % 4 + 4 g) .. + 16 for block g, and a half of the dims each,
// 256 (w / 4) .. + 256:
//   QK  S^T[key][head] = K Q^T over its 256 dims (16 MFMAs a block); the two halves' partials meet through LDS;
//   PV  O^T[v][head] = V^T P^T for its 256 columns (16 MFMAs a block); S^T's accumulator layout is P^T's operand
//       layout, so P never leaves registers, but to reach the other wave of the pair.
// With one block, both waves of a pair add the two partials (a + b == b + a: the same scores) and compute the same
// softmax. With two, each wave computes the softmax of one of them, its own (local block 0; the other is local block
// 1), and the pair swap P and the running max through LDS (a third barrier a tile). Each key and value read from LDS
// feeds every block of the wave: 128 heads a workgroup do twice the MFMAs of 64 for the same loads, dequantization,
// key and value reads, and the same softmax work a wave.
// With transposed products each lane's column is one head: softmax state is per lane, keys run along lanes, and
// lane group g (lanes 16g..16g+15) holds keys 4g..4g+3, the same keys it dequantizes.
// The key tiles are double-buffered and the global loads of tile t + 1 are in flight during tile t. Two barriers
// per tile (three with two blocks).
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
constexpr int kWaveDims = kHeadDim / 2;                   // 256 QK dims and PV columns of a wave
constexpr int kWaveReads = kWaveDims / 32;                // 16-byte A reads (two MFMA k-steps) per wave and GEMM
constexpr int kColumnBlocks = kWaveDims / 16;             // 16-column output blocks of a wave
constexpr float kRescaleThreshold = 8.f;                  // log2 units: unnormalized p stays <= 2^8
constexpr int kWavePairs = kWaves / 2;                    // the two dim halves of the same heads
static_assert(kKeysPerTile == 16, "one MFMA key block a tile");
// Q chunks and output column blocks are all nope or all rope: e4m3fn's factor 2 is folded into the nope ones.
static_assert(kNopeDim % kChunkElements == 0 && kNopeDim % 16 == 0, "no chunk or column block across nope and rope");
static_assert(kWaves * kWaveSize * kShareElements * 4 == kKeysPerTile * kHeadDim, "each element dequantized once");

// The heads of a workgroup: kHeads / 16 MFMA blocks, kBlocks on each wave pair.
template <int kHeads>
struct WorkgroupShape {
  static constexpr int kHeadsPerWorkgroup = kHeads;
  static constexpr int kBlocks = kHeads / 16 / kWavePairs;  // head blocks of a wave
  static_assert(kHeads % (16 * kWavePairs) == 0, "whole head blocks on every wave pair");
  // Q^T 32 and O^T 64 registers a block: two blocks and the tile's working set fill a wave's 256 at 2 waves a SIMD.
  static_assert(kBlocks == 1 || kBlocks == 2, "one or two head blocks a wave");
  // Then lane-dependent values (addresses, the lane index) are recomputed where they are used (recompute_from)
  // rather than kept in registers through the tile loop.
  static constexpr bool kRecomputeLaneValues = kBlocks == 2;
  static_assert(kHeads == heads_per_workgroup(kHeads), "a shape the launch chooses");
};

// One key tile in LDS, 32 KiB; the workgroup holds two.
struct SharedTiles {
  // Key rows, 64 chunks of 8 bf16 each; chunk c of key r sits at r * 64 + (c ^ r % 8), so the 8 rows one read
  // phase touches at a chunk cover all banks. After QK this space holds the wave pairs' exchange (PairExchange).
  u32x4 keys[kKeysPerTile * kChunksPerRow];
  // Value columns: the bf16 of keys 4g..4g+3 at column v in one 8-byte word (value_word), so that a PV read of
  // 16 bytes per lane, lanes in order, covers 1 KiB (its 16-byte slots permuted within groups of 8: value_slot).
  u32x2 values[kHeadDim * kKeyQuads];
};
static_assert(2 * sizeof(SharedTiles) == 65536, "two tiles fill the 64 KiB of LDS");

// After QK, the key rows' space holds what a wave pair swaps, [wave][lane] each: the partial scores of the block the
// other wave adds them to (an MFMA accumulator), then, with two blocks, the wave's P^T and running max for the other.
struct PairExchange {
  floatx4 partial_scores[kWaves * kWaveSize];
  u32x4 weights[kWaves * kWaveSize];  // P^T (2 words: 4 bf16), the running max (fp32 bits), unused
};
static_assert(sizeof(PairExchange) <= sizeof(SharedTiles::keys), "the pair exchange fits in the key rows");
__device__ __forceinline__ PairExchange& pair_exchange(SharedTiles& lds) {
  return *reinterpret_cast<PairExchange*>(lds.keys);
}

constexpr int key_chunk_slot(int key, int chunk) { return key * kChunksPerRow + (chunk ^ (key % 8)); }

// Where 16-byte slot `slot` of the value columns is stored: permuted within its aligned group of 8 slots (128 bytes,
// all banks) by bits 3 and 6 of the slot, so that the 8-byte stores of 16 lanes (value_word of 4 lane_rows' 4
// columns, in two 32-column groups) hit 16 distinct bank pairs, while 8 consecutive lanes' PV reads stay in one group.
constexpr int value_slot(int slot) { return slot ^ (((slot >> 3) & 1) | (((slot >> 6) & 1) << 1)); }

// Word of column v, key quad g: slots of 32-column groups of [g][v % 16], each holding columns v and v + 16.
constexpr int value_word(int v, int quad) {
  return 2 * value_slot(((v / 32) * kKeyQuads + quad) * 16 + v % 16) + (v / 16) % 2;
}

// The LDS slots of a lane's reads in dim half h: QK step p reads chunk 32 h + 4 p + lane_group of key row
// lane_row, PV step c reads value slot 64 (8 h + c) + lane. Each is the slot of step % 2 plus stride times the rest
// of the step (ReadSlots): the swizzles flip only the step's lowest bit, per lane, so two per-lane bases and
// immediate offsets serve all steps (registers are the limit at 128 heads a workgroup).
constexpr int qk_read_slot(int dim_half, int lane, int p) {
  return key_chunk_slot(lane % 16, dim_half * 32 + 4 * p + lane / 16);
}
constexpr int pv_read_slot(int dim_half, int lane, int c) {
  return value_slot((dim_half * kWaveReads + c) * kWaveSize + lane);
}
struct ReadSlots {
  int base[2];
  int stride;
  constexpr int at(int step) const { return base[step % 2] + stride * (step - step % 2); }
};
constexpr ReadSlots qk_read_slots(int dim_half, int lane) {
  return {{qk_read_slot(dim_half, lane, 0), qk_read_slot(dim_half, lane, 1)}, 4};
}
constexpr ReadSlots pv_read_slots(int dim_half, int lane) {
  return {{pv_read_slot(dim_half, lane, 0), pv_read_slot(dim_half, lane, 1)}, kWaveSize};
}
constexpr bool read_slots_are_linear() {
  for (int h = 0; h < 2; ++h)
    for (int lane = 0; lane < kWaveSize; ++lane)
      for (int step = 0; step < kWaveReads; ++step)
        if (qk_read_slots(h, lane).at(step) != qk_read_slot(h, lane, step) ||
            pv_read_slots(h, lane).at(step) != pv_read_slot(h, lane, step))
          return false;
  return true;
}
static_assert(read_slots_are_linear(), "a swizzle changed: reads are no longer two bases plus constants");

// A lane's share of one key tile, loaded a tile ahead: elements [first, first + 4) of the keys 4g..4g+3.
struct KeyShare {
  u32x2 data[4];         // nope: 8 fp8 bytes holding the 4 (ShareSpot::part_offset); rope: the 4 bf16
  uint32_t scale_bits;   // nope: the elements' scale of the key this lane located, as loaded (Keys::scale_value)
  uint64_t valid_lanes;  // bit l: the key lane l located exists and is valid (else it read kSkippedKeyBytes)
  bool in_extra_cache;   // the tile's keys come from the extra cache (wave-uniform)
};

// Lane r of each DPP quad (lanes 4m..4m+3) of lane group g locates key 4 g + r of a tile and shares its addresses with
// the quad: each key is located by 4 lanes of its group instead of all 16. Step 1, a tile ahead of step 2: the key's
// index (negative: no key).
template <class Keys>
__device__ __forceinline__ int32_t fetch_key_index(const Keys& keys, int first_position, int end, unsigned lane) {
  const int position = first_position + 4 * (lane / 16) + lane % 4;  // key 4 g + r
  return position < end ? keys.tile(first_position).fetch(position) : -1;
}

// The first of the 4 elements of each key a lane dequantizes: wave w covers elements 64 w .. + 64.
constexpr int share_first_element(int wave, int lane) { return wave * 64 + lane % 16 * kShareElements; }

// Where a lane's elements [share_first_element, + 4) lie in each key's bytes.
struct ShareSpot {
  bool nope;         // in the nope part, else in the rope part (wave-uniform)
  int part_offset;   // of 8 bytes holding them in that part: a nope lane's 4 bytes first where Keys allow reading 4
                     // past them (kNopeRowFollowed), else the aligned 8 (the lane's 4 and its neighbour's)
  int scale_offset;  // of their scale (wave-uniform: a wave's 64 elements are one scale tile)

  template <class Keys>
  __device__ static ShareSpot of(int wave, int lane) {
    static_assert(kScaleTileDim == 64, "a wave's elements share one scale");
    const int first_element = share_first_element(wave, lane);
    const bool nope = wave * 64 < kNopeDim;
    const int nope_offset = Keys::kNopeRowFollowed ? first_element : first_element & ~7;
    return {nope, nope ? nope_offset : 2 * (first_element - kNopeDim), nope ? wave * Keys::kScaleBytes : 0};
  }
};

// What a skipped key reads instead of a token: zeros, which dequantize to zeros (an e8m0 byte 0 is 2^-127, an fp32
// scale 0 is 0), so its key row and value column need no masking. Past every offset a lane reads at.
__device__ const uint8_t kSkippedKeyBytes[1024] = {};
static_assert(kNopeDim + 8 <= sizeof(kSkippedKeyBytes) && 2 * (kHeadDim - kNopeDim) <= sizeof(kSkippedKeyBytes),
              "a lane's offsets stay inside the skipped key's bytes");

// Step 2: the lane's share of the quad's keys. Every lane issues the same loads, without branches, so nothing
// waits for them here: 8 bytes of each key (ShareSpot) and the scale of the key it located (a rope lane's is not used;
// the quad shares the scales when it dequantizes). A skipped key reads kSkippedKeyBytes instead.
template <class Keys>
__device__ __forceinline__ KeyShare load_key_share(const Keys& keys, int first_position, int32_t index,
                                                   const ShareSpot& spot, int lane) {
  bool mine_valid;
  const TokenBytes mine = keys.tile(first_position).locate(index, kSkippedKeyBytes, mine_valid);
  const uint8_t* const my_part = spot.nope ? mine.nope : mine.rope;
  const uint8_t* const my_scales = mine.scales;
  KeyShare share = {};
  share.valid_lanes = wave_ballot(mine_valid);
  share.in_extra_cache = keys.tile(first_position).in_extra_cache;
  share.scale_bits = keys.load_scale_bits(my_scales + spot.scale_offset);
  for_each_quad_lane([&](auto source) {  // key `source` of the quad
    constexpr int i = decltype(source)::value;
    share.data[i] = load_unaligned<u32x2>(quad_broadcast<i>(my_part) + spot.part_offset);
  });
  return share;
}

// The lanes whose element e is a valid key: lane group g holds key 4 g + e there, which lane 16 g + e located (its
// bit of `valid_lanes`, wave_ballot of the locating lanes); that bit spread over the group's 16 lanes. Wave-uniform:
// scalar instructions.
__device__ __forceinline__ uint64_t lanes_of_valid_key(uint64_t valid_lanes, int e) {
  return ((valid_lanes >> e) & 0x0001000100010001ull) * 0xFFFFull;
}

// Element j of 4 keys' 4 bf16 (rows), the keys in order: the word pair of a value column.
__device__ __forceinline__ u32x2 value_column(const u32x2 (&rows)[4], int j) {
  const int word = j / 2;
  return j % 2 == 0
             ? u32x2{pack_low_halves(rows[0][word], rows[1][word]), pack_low_halves(rows[2][word], rows[3][word])}
             : u32x2{pack_high_halves(rows[0][word], rows[1][word]), pack_high_halves(rows[2][word], rows[3][word])};
}

// Where a lane's 8 stores of a tile go, in bytes into the key rows and into the value columns: key i of its quad at
// key_base ^ 16 i, + 1024 i (key_chunk_slot's swizzle touches only the bits i sets), element j at value_base ^ 16 j
// (value_slot's likewise). One register and one VALU each instead of a register per store.
struct StoreBytes {
  int key_base;    // key 4 quad + 0, its chunk's half
  int value_base;  // element first_element + 0

  static constexpr StoreBytes of(int wave, int lane) {
    const int quad = lane / 16, first_element = share_first_element(wave, lane);
    return {16 * key_chunk_slot(4 * quad, first_element / kChunkElements) + 8 * (lane % 2),
            8 * value_word(first_element, quad)};
  }
  constexpr int key(int i) const { return (key_base ^ (16 * i)) + 16 * kChunksPerRow * i; }
  constexpr int value(int j) const { return value_base ^ (16 * j); }
};
constexpr bool store_bytes_are_xors() {
  for (int wave = 0; wave < kWaves; ++wave)
    for (int lane = 0; lane < kWaveSize; ++lane) {
      const int quad = lane / 16, first_element = share_first_element(wave, lane);
      const StoreBytes bytes = StoreBytes::of(wave, lane);
      for (int i = 0; i < 4; ++i)
        if (bytes.key(i) != 16 * key_chunk_slot(4 * quad + i, first_element / kChunkElements) + 8 * (lane % 2) ||
            bytes.value(i) != 8 * value_word(first_element + i, quad))
          return false;
    }
  return true;
}
static_assert(store_bytes_are_xors(), "a swizzle changed: stores are no longer a base XOR the index");

// Dequantizes the lane's share of a tile and stores it as key rows and value columns at `at` (StoreBytes::of the
// lane).
template <class Keys>
__device__ __forceinline__ void store_key_share(const Keys& keys, SharedTiles& lds, const KeyShare& share,
                                                const StoreBytes& at, unsigned lane, bool nope) {
  const bool high_half = !Keys::kNopeRowFollowed && lane % 2;  // the lane's 4 bytes are the high word of the 8
  u32x2 rows[4];
  if (nope) {  // wave-uniform: one branch for the 4 keys
    // The scale of the key this lane located.
    const float my_scale = keys.scale_value(share.scale_bits);
    keys.with_dequant(share.in_extra_cache, [&](auto dequant) {
      for_each_quad_lane([&](auto source) {  // key `source` of the quad, located by quad lane `source`
        constexpr int i = decltype(source)::value;
        rows[i] = dequant(high_half ? share.data[i][1] : share.data[i][0], quad_broadcast<i>(my_scale));
      });
    });
  } else {
#pragma unroll
    for (int i = 0; i < 4; ++i) rows[i] = share.data[i];
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) *reinterpret_cast<u32x2*>(reinterpret_cast<char*>(lds.keys) + at.key(i)) = rows[i];
#pragma unroll
  for (int j = 0; j < kShareElements; ++j) {
    *reinterpret_cast<u32x2*>(reinterpret_cast<char*>(lds.values) + at.value(j)) = value_column(rows, j);
  }
}

template <class Keys, class Shape>
__global__ void __launch_bounds__(kThreads)
    attention_kernel(const typename Keys::Params params, const AttentionShape shape, const AttentionOutputs outputs,
                     const SplitKVWorkspace workspace) {
  constexpr int kBlocks = Shape::kBlocks;
  __shared__ SharedTiles tiles[2];
  const int row = workgroup_index_x();
  const int split = workgroup_index_z();
  const int wave = wave_index(), lane = lane_index();
  const int lane_row = lane % 16, lane_group = lane / 16;  // MFMA row/column index and k-group of this lane
  const int wave_pair = wave % kWavePairs, dim_half = wave / kWavePairs;
  auto recomputed = [](int value) { return Shape::kRecomputeLaneValues ? recompute_from(value) : value; };
  // The head of MFMA column `column` (a lane's lane_row) in local head block b. With two blocks a wave's own
  // (local 0) is block dim_half.
  auto head_of = [&](int b, int column) {
    const int block = kBlocks == 1 ? 0 : (b + dim_half) % 2;
    return workgroup_index_y() * Shape::kHeadsPerWorkgroup + 16 * (wave_pair + kWavePairs * block) + column;
  };
  // This lane dequantizes elements [64 wave + 4 lane_row, + 4) of keys 4 * lane_group + i.
  const ShareSpot share_spot = ShareSpot::of<Keys>(wave, lane);
  const ReadSlots key_slots = qk_read_slots(dim_half, lane), value_slots = pv_read_slots(dim_half, lane);
  // This wave's and its pair's (wave ^ 4: the other dim half of the same heads) entries of the pair exchange.
  const int my_entry = wave * kWaveSize + lane, partner_entry = (wave ^ kWavePairs) * kWaveSize + lane;

  const Keys keys(params, row);
  const PositionRange range = split_positions(keys.num_positions(), split, workspace.num_splits, kKeysPerTile);
  const int num_tiles = (range.end - range.begin + kKeysPerTile - 1) / kKeysPerTile;
  auto fetch_tile = [&](int tile) {
    return fetch_key_index(keys, range.begin + tile * kKeysPerTile, range.end, recomputed(lane));
  };
  auto load_tile = [&](int tile, int32_t index) {
    return load_key_share(keys, range.begin + tile * kKeysPerTile, index, share_spot, lane);
  };

  // Q^T as B operands: this lane's head of each block, dims of chunk c in the same order as the K reads below.
  // Heads past num_heads are zeros and are never written out.
  bf16x4 q[kBlocks][2 * kWaveReads];
#pragma unroll
  for (int b = 0; b < kBlocks; ++b) {
    const int head = head_of(b, lane_row);
    const uint16_t* q_row = shape.q.row(row) + head * shape.q.head_stride;
#pragma unroll
    for (int p = 0; p < kWaveReads; ++p) {
      const int c = dim_half * 32 + 4 * p + lane_group;
      u32x4 w = head < shape.num_heads ? load_unaligned<u32x4>(q_row + kChunkElements * c) : u32x4{0, 0, 0, 0};
      if (Keys::kE4m3fnHalved && c * kChunkElements < kNopeDim) w = doubled_bf16x8(w);  // the keys' factor 2
      q[b][2 * p] = low_bf16x4(w);
      q[b][2 * p + 1] = high_bf16x4(w);
    }
  }

  floatx4 o[kBlocks][kColumnBlocks] = {};
  // log2 units; row_max[1] is the pair's running max of block 1, as last received.
  float row_max[kBlocks];
#pragma unroll
  for (int b = 0; b < kBlocks; ++b) row_max[b] = -INFINITY;
  floatx2 own_sums = {0.f, 0.f};  // block 0's sum of p over this lane's keys, in two parts (packed adds)
  const float scale_log2 = shape.sm_scale * kLog2e;

  // Tile t is in LDS while the key loads of tile t + 1 and the index loads of tile t + 2 are in flight: issued
  // during tile t - 1, they have a PV and a QK to arrive.
  KeyShare next = load_tile(0, fetch_tile(0));  // zeros when there is no tile
  int32_t next_index = fetch_tile(1);           // of the tile after `next`
  const StoreBytes store_at = StoreBytes::of(wave, lane);
  store_key_share(keys, tiles[0], next, store_at, lane, share_spot.nope);
  uint64_t valid_lanes = next.valid_lanes;  // of the tile in LDS
  next = load_tile(1, next_index);
  next_index = fetch_tile(2);
  workgroup_barrier();
  // Tile `tile` from tiles[kBuffer], the next one stored into the other buffer. kBuffer is a constant (a loop trip
  // runs two tiles), so the buffers' LDS addresses fold into the instructions' offsets.
  auto run_tile = [&](int tile, auto buffer) {
    constexpr int kBuffer = decltype(buffer)::value;
    SharedTiles& lds = tiles[kBuffer];

    floatx4 s[kBlocks] = {};
#pragma unroll
    for (int p = 0; p < kWaveReads; ++p) {
      const u32x4 k = lds.keys[key_slots.at(p)];  // each key read feeds every block
#pragma unroll
      for (int b = 0; b < kBlocks; ++b) {
        s[b] = mfma_16x16x16_bf16(low_bf16x4(k), q[b][2 * p], s[b]);
        s[b] = mfma_16x16x16_bf16(high_bf16x4(k), q[b][2 * p + 1], s[b]);
      }
    }
    workgroup_barrier();  // every wave is done reading this tile's keys; the other buffer is free too
    PairExchange& exchange = pair_exchange(lds);
    exchange.partial_scores[my_entry] = s[kBlocks - 1];  // the block the pair adds it to: block 0 of wave ^ 4
    const uint64_t tile_valid_lanes = valid_lanes;
    if (tile + 1 < num_tiles) {
      const StoreBytes at = {recomputed(store_at.key_base), recomputed(store_at.value_base)};
      store_key_share(keys, tiles[1 - kBuffer], next, at, lane, share_spot.nope);
      valid_lanes = next.valid_lanes;
      if (tile + 2 < num_tiles) {
        next = load_tile(tile + 2, next_index);
        next_index = fetch_tile(tile + 3);
      }
    }
    workgroup_barrier();

    // The softmax of block 0: the whole row of scores is this wave's half plus the pair's; a key that is not there
    // scores -inf.
    s[0] += exchange.partial_scores[partner_entry];
    // Element e is key 4 * lane_group + e; pairs of elements go through packed fp32 instructions.
    const floatx2 scaled[2] = {floatx2{s[0][0], s[0][1]} * scale_log2, floatx2{s[0][2], s[0][3]} * scale_log2};
    float x[4];
    float tile_max = -INFINITY;
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      x[e] = select_by_lane_mask(lanes_of_valid_key(tile_valid_lanes, e), -INFINITY, scaled[e / 2][e % 2]);
      tile_max = fmaxf(tile_max, x[e]);
    }
    tile_max = fmaxf(tile_max, shuffle_xor(tile_max, 16));
    tile_max = fmaxf(tile_max, shuffle_xor(tile_max, 32));
    // Lazy rescale: the running max moves (and O, the row sum are rescaled) only when a tile's max exceeds it by
    // kRescaleThreshold; until then p may reach 2^8. Wave-uniform, so the rescale is skipped by the whole wave.
    if (wave_any(tile_max > row_max[0] + kRescaleThreshold)) {
      isa_rare_path();
      const float new_max = fmaxf(row_max[0], tile_max);
      const float factor = new_max == row_max[0] ? 1.f : fast_exp2(row_max[0] - new_max);
      own_sums *= factor;
#pragma unroll
      for (int n = 0; n < kColumnBlocks; ++n) o[0][n] *= factor;
      row_max[0] = new_max;
    }
    const float reference = row_max[0] == -INFINITY ? 0.f : row_max[0];  // no valid key yet: all x are -inf
    const floatx2 shifted[2] = {floatx2{x[0], x[1]} - reference, floatx2{x[2], x[3]} - reference};
    float p[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) p[e] = fast_exp2(shifted[e / 2][e % 2]);
    own_sums += floatx2{p[0], p[1]} + floatx2{p[2], p[3]};
    bf16x4 p_t[kBlocks];
    const u32x2 p_words = {pack_bf16x2_ties_away(p[0], p[1]), pack_bf16x2_ties_away(p[2], p[3])};
    p_t[0] = __builtin_bit_cast(bf16x4, p_words);
    if constexpr (kBlocks == 2) {  // block 1's P^T and running max from the pair, which computed its softmax
      exchange.weights[my_entry] = u32x4{p_words[0], p_words[1], __builtin_bit_cast(uint32_t, row_max[0]), 0};
      workgroup_barrier();
      const u32x4 received = exchange.weights[partner_entry];
      p_t[1] = __builtin_bit_cast(bf16x4, u32x2{received[0], received[1]});
      const float partner_max = __builtin_bit_cast(float, received[2]);
      if (wave_any(partner_max != row_max[1])) {  // the pair moved it: O of block 1 follows
        isa_rare_path();
        // 0 from -inf (O is still zero then); 1 where this head's max did not move (both -inf: not NaN).
        const float factor = partner_max == row_max[1] ? 1.f : fast_exp2(row_max[1] - partner_max);
#pragma unroll
        for (int n = 0; n < kColumnBlocks; ++n) o[1][n] *= factor;
        row_max[1] = partner_max;
      }
    }

#pragma unroll
    for (int c = 0; c < kWaveReads; ++c) {
      const u32x4 v = reinterpret_cast<const u32x4*>(lds.values)[value_slots.at(c)];  // feeds every block
#pragma unroll
      for (int b = 0; b < kBlocks; ++b) {
        o[b][2 * c] = mfma_16x16x16_bf16(low_bf16x4(v), p_t[b], o[b][2 * c]);
        o[b][2 * c + 1] = mfma_16x16x16_bf16(high_bf16x4(v), p_t[b], o[b][2 * c + 1]);
      }
    }
  };
  for (int tile = 0; tile < num_tiles; tile += 2) {
    run_tile(tile, std::integral_constant<int, 0>());
    if (tile + 1 < num_tiles) run_tile(tile + 1, std::integral_constant<int, 1>());
  }

  const bool final_output = workspace.num_splits == 1;
  const int end_lane = recomputed(lane);  // nothing lane-dependent of the epilogue kept through the loop
  // The row sums: over the 4 lane groups (all lanes take part before any lane leaves), block 1's from the pair.
  float row_sum[kBlocks];
  row_sum[0] = own_sums[0] + own_sums[1];
  row_sum[0] += shuffle_xor(row_sum[0], 16);
  row_sum[0] += shuffle_xor(row_sum[0], 32);
  if constexpr (kBlocks == 2) {
    workgroup_barrier();  // every wave is done with the tiles
    float* const sums = reinterpret_cast<float*>(tiles[0].keys);
    sums[wave * kWaveSize + end_lane] = row_sum[0];
    workgroup_barrier();
    row_sum[1] = sums[(wave ^ kWavePairs) * kWaveSize + end_lane];
  }
#pragma unroll
  for (int b = 0; b < kBlocks; ++b) {
    const int head = head_of(b, end_lane % 16);
    if (head >= shape.num_heads) continue;
    const RowEnd end(row_sum[b], (row_max[b] + fast_log2(row_sum[b])) * kLn2, final_output, outputs.attn_sink, head);
    const int64_t out_row = int64_t(row) * shape.num_heads + head;
    const int64_t accum_row = (int64_t(split) * shape.num_rows + row) * shape.num_heads + head;
#pragma unroll
    for (int n = 0; n < kColumnBlocks; ++n) {
      const int v = 16 * (dim_half * kColumnBlocks + n) + 4 * (end_lane / 16);  // element e is column v + e
      // The values' factor 2 on the nope columns (a column block is all nope or all rope).
      const bool doubled = Keys::kE4m3fnHalved && 16 * (dim_half * kColumnBlocks + n) < kNopeDim;
      const floatx4 values = o[b][n] * (doubled ? 2.f * end.scale : end.scale);
      if (final_output) {
        store_unaligned(outputs.out + out_row * kHeadDim + v,
                        u32x2{pack_bf16x2(values[0], values[1]), pack_bf16x2(values[2], values[3])});
      } else {
        store_unaligned(workspace.out_accum + accum_row * kHeadDim + v, values);
      }
    }
    if (dim_half == 0 && end_lane < 16) store_row_lse(outputs, workspace, shape, row, head, split, end.stored_lse);
  }
}

}  // namespace flash_mla::gfx942
