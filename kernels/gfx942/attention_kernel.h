// The gfx942 attention kernel of both ops: one workgroup = 64 or 128 heads (WorkgroupShape) x one query row x one
// split, one workgroup per CU (its two key tiles fill the 64 KiB of LDS).
//
// Per tile of 16 keys, every lane dequantizes 4 elements of 4 keys for each of its shares (1 or 2), once for the
// workgroup, into two LDS copies: key rows (the A operand of QK) and value columns (the A operand of PV). The waves
// form head groups of kDimParts waves (128 heads: 4 groups of 2 waves, w and w ^ 4; 64 heads: 1 group of 4 waves);
// the waves of a head group hold the same kDimParts 16-head MFMA blocks and a kDimParts-th of the dims each:
//   QK  S^T[key][head] = K Q^T over its dims (one MFMA per 16 dims and block); the parts' partials meet through LDS;
//   PV  O^T[v][head] = V^T P^T for its columns; S^T's accumulator layout is P^T's operand layout, so P never leaves
//       registers, but to reach the other waves of the head group.
// Each wave computes the softmax of one of its blocks, its own (local block 0; local block b is the one the wave of
// dim part + b owns): it adds the other parts' partial scores of that block, and the head group swaps P^T and the
// running max through LDS. Every key and value read from LDS feeds each of a wave's blocks, so a wave does 64 MFMAs
// a tile in both shapes: at 128 heads 2 waves a SIMD (256 registers each), at 64 heads 1 (512 registers).
// With transposed products each lane's column is one head: softmax state is per lane, keys run along lanes, and
// lane group g (lanes 16g..16g+15) holds keys 4g..4g+3, the same keys it dequantizes.
// The key tiles are double-buffered and the global loads of tile t + 1 are in flight during tile t. Three barriers
// a tile.
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

constexpr int kChunkElements = 8;                         // a 16-byte chunk of a bf16 key row
constexpr int kChunksPerRow = kHeadDim / kChunkElements;  // 64
constexpr int kShareElements = 4;                         // elements of a key one lane dequantizes in a share
constexpr int kShares = 8;                                // share s: elements 64 s .. + 64 of every key of a tile
constexpr int kKeyQuads = kKeysPerTile / 4;               // an MFMA k-group is 4 keys
constexpr float kRescaleThreshold = 8.f;                  // log2 units: unnormalized p stays <= 2^8
static_assert(kKeysPerTile == 16, "one MFMA key block a tile");
// Q chunks and output column blocks are all nope or all rope: e4m3fn's factor 2 is folded into the nope ones.
static_assert(kNopeDim % kChunkElements == 0 && kNopeDim % 16 == 0, "no chunk or column block across nope and rope");
static_assert(kShares * kWaveSize * kShareElements * 4 == kKeysPerTile * kHeadDim, "each element dequantized once");

// The waves of a workgroup and what each holds.
template <int kHeads>
struct WorkgroupShape {
  static constexpr int kHeadsPerWorkgroup = kHeads;
  static constexpr int kWaves = kHeads == 128 ? 8 : 4;       // 2 waves a SIMD, or 1 (512 registers)
  static constexpr int kDimParts = kHeads == 128 ? 2 : 4;    // waves of a head group
  static constexpr int kHeadGroups = kWaves / kDimParts;     // of kBlocks 16-head blocks each
  static constexpr int kBlocks = kHeads / 16 / kHeadGroups;  // head blocks of a wave
  static constexpr int kWaveDims = kHeadDim / kDimParts;     // QK dims and PV columns of a wave
  static constexpr int kWaveChunks = kWaveDims / kChunkElements;
  static constexpr int kWaveReads = kWaveDims / 32;          // 16-byte A reads (two MFMA k-steps) per wave and GEMM
  static constexpr int kColumnBlocks = kWaveDims / 16;       // 16-column output blocks of a wave
  static constexpr int kThreads = kWaves * kWaveSize;
  static constexpr int kSharesPerLane = kShares / kWaves;     // share wave + kWaves i, i < kSharesPerLane
  static_assert(kHeads == 64 || kHeads == 128, "a shape the launch chooses");
  static_assert(kHeads == heads_per_workgroup(kHeads), "a shape the launch chooses");
  static_assert(kBlocks == kDimParts, "each wave of a head group owns the softmax of one of its blocks");
  static_assert(kWaves % 4 == 0 && kShares % kWaves == 0, "whole waves on each SIMD, whole shares on each lane");
  // Q^T and O^T: 64 + 128 registers in both shapes (kBlocks x kWaveDims is 512). At two waves a SIMD they and the
  // tile's working set fill a wave's 256: lane-dependent values (addresses, the lane index) are then recomputed
  // where they are used (recompute_from) rather than kept in registers through the tile loop.
  static_assert(kBlocks * kWaveDims == kHeadDim, "the same register footprint in both shapes");
  static constexpr bool kRecomputeLaneValues = kWaves == 8;
  // The wave of dim part `part` in head group `group`.
  static constexpr int wave_of(int group, int part) { return group + kHeadGroups * part; }
};

// One key tile in LDS, 32 KiB; the workgroup holds two.
struct SharedTiles {
  // Key rows, 64 chunks of 8 bf16 each; chunk c of key r sits at r * 64 + (c ^ r % 8), so the 8 rows one read
  // phase touches at a chunk cover all banks. After QK this space holds the head groups' exchange (HeadGroupExchange).
  u32x4 keys[kKeysPerTile * kChunksPerRow];
  // Value columns: the bf16 of keys 4g..4g+3 at column v in one 8-byte word (value_word), so that a PV read of
  // 16 bytes per lane, lanes in order, covers 1 KiB (its 16-byte slots permuted within groups of 8: value_slot).
  u32x2 values[kHeadDim * kKeyQuads];
};
static_assert(2 * sizeof(SharedTiles) == 65536, "two tiles fill the 64 KiB of LDS");

// After QK, the key rows' space holds what a head group swaps: each wave's partial scores of the blocks the other
// waves own (MFMA accumulators, [wave][local block - 1][lane]), then each wave's P^T and running max of its own block.
template <class Shape>
struct HeadGroupExchange {
  floatx4 partial_scores[Shape::kWaves * (Shape::kBlocks - 1) * kWaveSize];
  u32x4 weights[Shape::kWaves * kWaveSize];  // [wave][lane]: P^T (2 words: 4 bf16), the running max (fp32 bits)

  static constexpr int partial_entry(int wave, int local_block, int lane) {
    return (wave * (Shape::kBlocks - 1) + local_block - 1) * kWaveSize + lane;
  }
};
template <class Shape>
__device__ __forceinline__ HeadGroupExchange<Shape>& head_group_exchange(SharedTiles& lds) {
  static_assert(sizeof(HeadGroupExchange<Shape>) <= sizeof(SharedTiles::keys), "the exchange fits in the key rows");
  return *reinterpret_cast<HeadGroupExchange<Shape>*>(lds.keys);
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

// The LDS slots of a lane's reads from a wave's first chunk and first read (of its dim part): QK step p reads chunk
// first_chunk + 4 p + lane_group of key row lane_row, PV step c reads value slot 64 (first_read + c) + lane. Each is
// the slot of step % 2 plus stride times the rest of the step (ReadSlots): the swizzles flip only the step's lowest
// bit, per lane, so two per-lane bases and immediate offsets serve all steps.
constexpr int qk_read_slot(int first_chunk, int lane, int p) {
  return key_chunk_slot(lane % 16, first_chunk + 4 * p + lane / 16);
}
constexpr int pv_read_slot(int first_read, int lane, int c) { return value_slot((first_read + c) * kWaveSize + lane); }
struct ReadSlots {
  int base[2];
  int stride;
  constexpr int at(int step) const { return base[step % 2] + stride * (step - step % 2); }
};
constexpr ReadSlots qk_read_slots(int first_chunk, int lane) {
  return {{qk_read_slot(first_chunk, lane, 0), qk_read_slot(first_chunk, lane, 1)}, 4};
}
constexpr ReadSlots pv_read_slots(int first_read, int lane) {
  return {{pv_read_slot(first_read, lane, 0), pv_read_slot(first_read, lane, 1)}, kWaveSize};
}
template <class Shape>
constexpr bool read_slots_are_linear() {
  for (int part = 0; part < Shape::kDimParts; ++part)
    for (int lane = 0; lane < kWaveSize; ++lane)
      for (int step = 0; step < Shape::kWaveReads; ++step) {
        const int first_chunk = part * Shape::kWaveChunks, first_read = part * Shape::kWaveReads;
        if (qk_read_slots(first_chunk, lane).at(step) != qk_read_slot(first_chunk, lane, step) ||
            pv_read_slots(first_read, lane).at(step) != pv_read_slot(first_read, lane, step))
          return false;
      }
  return true;
}
static_assert(read_slots_are_linear<WorkgroupShape<64>>() && read_slots_are_linear<WorkgroupShape<128>>(),
              "a swizzle changed: reads are no longer two bases plus constants");

// A lane's shares of one key tile, loaded a tile ahead: for each, elements [first, first + 4) of the keys 4g..4g+3.
template <int kSharesPerLane>
struct KeyShare {
  // nope: the 4 fp8 bytes in the low word and, for consecutive tokens (CsrKeys), the key's scale bits in the high
  // word; rope: the 4 bf16.
  u32x2 data[kSharesPerLane][4];
  uint32_t scale_bits[kSharesPerLane];  // nope, located keys (SparseKeys): of the key this lane located, as loaded
  uint64_t valid_lanes;  // bit l: the key lane l stands for exists and is valid (else its bytes read zeros)
  bool in_extra_cache;   // the tile's keys come from the extra cache (wave-uniform)
};

// Lane r of each DPP quad (lanes 4m..4m+3) of lane group g stands for key 4 g + r of a tile: it fetches the key's
// index (negative: no key), a tile ahead of the loads, and SparseKeys' lane locates the key for its quad (each key
// located by 4 lanes of its group instead of all 16).
template <class Keys>
__device__ __forceinline__ int32_t fetch_key_index(const Keys& keys, int first_position, int end, unsigned lane) {
  const int position = first_position + 4 * (lane / 16) + lane % 4;  // key 4 g + r
  return keys.tile(first_position, end).fetch(position);
}

// The first of the 4 elements of each key a lane dequantizes in share s: elements 64 s .. + 64 of a key.
constexpr int share_first_element(int share, int lane) { return share * 64 + lane % 16 * kShareElements; }

// Whether share s of every lane of a workgroup whose lanes hold kSharesPerLane shares is a nope share: its waves'
// shares (wave + kWaves s) all end before the rope. A constant where ShareSpot::nope is wave-uniform (the kernel
// folds it into its ShareSpots).
template <int kSharesPerLane>
constexpr bool nope_on_every_wave(int s) {
  return (kShares / kSharesPerLane) * (s + 1) * 64 <= kNopeDim;
}

// Where a lane's elements [share_first_element, + 4) lie in each key's bytes.
struct ShareSpot {
  bool nope;         // in the nope part, else in the rope part (wave-uniform)
  int part_offset;   // of their bytes (a nope lane's 4, a rope lane's 8) from the part's bytes (the nope bytes where
                     // Keys::kRopeFollowsNope)
  int scale_offset;  // of their scale (wave-uniform: a share's 64 elements are one scale tile)

  template <class Keys>
  __device__ static ShareSpot of(int share, int lane) {
    static_assert(kScaleTileDim == 64, "a share's elements share one scale");
    const int first_element = share_first_element(share, lane);
    const bool nope = share * 64 < kNopeDim;
    const int rope_offset = 2 * (first_element - kNopeDim) + (Keys::kRopeFollowsNope ? kNopeDim : 0);
    return {nope, nope ? first_element : rope_offset, nope ? share * Keys::kScaleBytes : 0};
  }
};

// Step 2: the lane's shares of the quad's keys, for tile positions [first_position, + 16) cut at `end`; `index` is
// what fetch_key_index gave this lane. Nothing waits for the loads here.
// Consecutive tokens (CsrKeys): each key's bytes and scale at constant strides from the tile's first token, through
// range-checked loads (a key past the split's end reads zeros); one wave-uniform branch a share, nope or rope.
// Located keys (SparseKeys): every lane issues the same loads, without branches: 8 bytes from each key a share (a
// nope share's 4 and the 4 past them, a rope share's 8, all from the key's nope bytes) and the scale of the key it
// located (a rope share's is not used). A skipped key reads what Keys::locate gives for it.
template <class Keys, int kSharesPerLane>
__device__ __forceinline__ KeyShare<kSharesPerLane> load_key_share(const Keys& keys, int first_position, int end,
                                                                   int32_t index, unsigned lane,
                                                                   const ShareSpot (&spots)[kSharesPerLane]) {
  const auto tile = keys.tile(first_position, end);
  KeyShare<kSharesPerLane> share;
  share.in_extra_cache = tile.in_extra_cache;
  if constexpr (Keys::kConsecutiveTokens) {
    share.valid_lanes = wave_ballot(index >= 0);
    // Of the lane's group; % 4 restates lane < 64 for the compiler where the lane is recomputed (recompute_from), so
    // that the keys' offsets stay 32-bit arithmetic.
    const int first_key = 4 * (lane / 16 % 4);
#pragma unroll
    for (int s = 0; s < kSharesPerLane; ++s) {
      if (spots[s].nope) {
        for_each_quad_lane([&](auto key) {
          constexpr int i = decltype(key)::value;
          share.data[s][i] =
              u32x2{tile.load_nope(first_key + i, spots[s]), tile.load_scale_bits(first_key + i, spots[s])};
        });
      } else {
        for_each_quad_lane([&](auto key) {
          constexpr int i = decltype(key)::value;
          share.data[s][i] = tile.load_rope(first_key + i, spots[s]);
        });
      }
    }
  } else {
    static_assert(Keys::kRopeFollowsNope, "a located key's parts are found from its nope bytes");
    bool mine_valid;
    const TokenBytes mine = tile.locate(index, mine_valid);
    share.valid_lanes = wave_ballot(mine_valid);
#pragma unroll
    for (int s = 0; s < kSharesPerLane; ++s)
      share.scale_bits[s] = keys.load_scale_bits(mine.scales + spots[s].scale_offset);
    for_each_quad_lane([&](auto key) {  // key i of the quad: one pointer for all shares
      constexpr int i = decltype(key)::value;
      const uint8_t* const token = quad_broadcast<i>(mine.nope);
#pragma unroll
      for (int s = 0; s < kSharesPerLane; ++s) share.data[s][i] = load_unaligned<u32x2>(token + spots[s].part_offset);
    });
  }
  return share;
}

// The lanes whose element e is a valid key: lane group g holds key 4 g + e there, which lane 16 g + e stands for (its
// bit of `valid_lanes`, wave_ballot of those lanes); that bit spread over the group's 16 lanes. Wave-uniform: scalar
// instructions.
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

// Where a lane's 8 stores of a share of a tile go, in bytes into the key rows and into the value columns: key i of its
// quad at key_base ^ 16 i, + 1024 i (key_chunk_slot's swizzle touches only the bits i sets), element j at
// value_base ^ 16 j (value_slot's likewise). One register and one VALU each instead of a register per store.
struct StoreBytes {
  int key_base;    // key 4 quad + 0, its chunk's half
  int value_base;  // element first_element + 0

  static constexpr StoreBytes of(int share, int lane) {
    const int quad = lane / 16, first_element = share_first_element(share, lane);
    return {16 * key_chunk_slot(4 * quad, first_element / kChunkElements) + 8 * (lane % 2),
            8 * value_word(first_element, quad)};
  }
  constexpr int key(int i) const { return (key_base ^ (16 * i)) + 16 * kChunksPerRow * i; }
  constexpr int value(int j) const { return value_base ^ (16 * j); }
};
constexpr bool store_bytes_are_xors() {
  for (int share = 0; share < kShares; ++share)
    for (int lane = 0; lane < kWaveSize; ++lane) {
      const int quad = lane / 16, first_element = share_first_element(share, lane);
      const StoreBytes bytes = StoreBytes::of(share, lane);
      for (int i = 0; i < 4; ++i)
        if (bytes.key(i) != 16 * key_chunk_slot(4 * quad + i, first_element / kChunkElements) + 8 * (lane % 2) ||
            bytes.value(i) != 8 * value_word(first_element + i, quad))
          return false;
    }
  return true;
}
static_assert(store_bytes_are_xors(), "a swizzle changed: stores are no longer a base XOR the index");

// Dequantizes the lane's share `s` of a tile and stores it as key rows and value columns at `at` (StoreBytes::of
// the share and lane).
template <class Keys, int kSharesPerLane>
__device__ __forceinline__ void store_key_share(const Keys& keys, SharedTiles& lds, KeyShare<kSharesPerLane>& share,
                                                int s, const StoreBytes& at, bool nope) {
  u32x2(&rows)[4] = share.data[s];  // dequantized in place: a rope share's bf16 are stored as loaded
  if (nope) {  // wave-uniform: one branch for the 4 keys
    // The quad's keys' scales: each key's as loaded with it, or the one quad lane i located for key i.
    float scales[4];
    for_each_quad_lane([&](auto key) {
      constexpr int i = decltype(key)::value;
      if constexpr (Keys::kConsecutiveTokens) {
        scales[i] = keys.scale_value(rows[i][1]);
      } else {
        scales[i] = quad_broadcast<i>(keys.scale_value(share.scale_bits[s]));
      }
    });
    keys.with_dequant(share.in_extra_cache, [&](auto dequant) {
#pragma unroll
      for (int i = 0; i < 4; ++i) rows[i] = dequant(rows[i][0], scales[i]);
    });
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) *reinterpret_cast<u32x2*>(reinterpret_cast<char*>(lds.keys) + at.key(i)) = rows[i];
#pragma unroll
  for (int j = 0; j < kShareElements; ++j) {
    *reinterpret_cast<u32x2*>(reinterpret_cast<char*>(lds.values) + at.value(j)) = value_column(rows, j);
  }
}

template <class Keys, class Shape>
__global__ void __launch_bounds__(Shape::kThreads)
    attention_kernel(const typename Keys::Params params, const AttentionShape shape, const AttentionOutputs outputs,
                     const SplitKVWorkspace workspace) {
  constexpr int kBlocks = Shape::kBlocks, kShareCount = Shape::kSharesPerLane;
  __shared__ SharedTiles tiles[2];
  const int row = workgroup_index_x();
  const int split = workgroup_index_z();
  const int wave = wave_index(), lane = lane_index();
  const int lane_row = lane % 16, lane_group = lane / 16;  // MFMA row/column index and k-group of this lane
  const int head_group = wave % Shape::kHeadGroups, dim_part = wave / Shape::kHeadGroups;
  auto recomputed = [](int value) { return Shape::kRecomputeLaneValues ? recompute_from(value) : value; };
  // The wave that owns local block b of this wave (computes its softmax): the wave of dim part + b.
  auto owner_of = [&](int b) { return Shape::wave_of(head_group, (dim_part + b) % kBlocks); };
  // The head of MFMA column `column` (a lane's lane_row) in local block b: blocks are numbered as their owners.
  auto head_of = [&](int b, int column) {
    return workgroup_index_y() * Shape::kHeadsPerWorkgroup + 16 * owner_of(b) + column;
  };
  // This lane dequantizes elements [64 s + 4 lane_row, + 4) of keys 4 * lane_group + i for its shares
  // s = wave + kWaves i: where they lie in a key, and where they go in LDS.
  ShareSpot share_spots[kShareCount];
  StoreBytes store_at[kShareCount];
#pragma unroll
  for (int i = 0; i < kShareCount; ++i) {
    share_spots[i] = ShareSpot::of<Keys>(wave + Shape::kWaves * i, lane);
    share_spots[i].nope |= nope_on_every_wave<kShareCount>(i);  // a constant where it is one
    store_at[i] = StoreBytes::of(wave + Shape::kWaves * i, lane);
  }
  const ReadSlots key_slots = qk_read_slots(dim_part * Shape::kWaveChunks, lane);
  const ReadSlots value_slots = pv_read_slots(dim_part * Shape::kWaveReads, lane);

  const Keys keys(params, row);
  const PositionRange range = split_positions(keys.num_positions(), split, workspace.num_splits, kKeysPerTile);
  const int num_tiles = (range.end - range.begin + kKeysPerTile - 1) / kKeysPerTile;
  auto fetch_tile = [&](int tile) {
    return fetch_key_index(keys, range.begin + tile * kKeysPerTile, range.end, recomputed(lane));
  };
  auto load_tile = [&](int tile, int32_t index) {
    return load_key_share(keys, range.begin + tile * kKeysPerTile, range.end, index, recomputed(lane), share_spots);
  };

  // Q^T as B operands: this lane's head of each block, dims of chunk c in the same order as the K reads below.
  // Heads past num_heads are zeros and are never written out.
  bf16x4 q[kBlocks][2 * Shape::kWaveReads];
#pragma unroll
  for (int b = 0; b < kBlocks; ++b) {
    const int head = head_of(b, lane_row);
    const uint16_t* q_row = shape.q.row(row) + head * shape.q.head_stride;
#pragma unroll
    for (int p = 0; p < Shape::kWaveReads; ++p) {
      const int c = dim_part * Shape::kWaveChunks + 4 * p + lane_group;
      u32x4 w = head < shape.num_heads ? load_unaligned<u32x4>(q_row + kChunkElements * c) : u32x4{0, 0, 0, 0};
      if (Keys::kE4m3fnHalved && c * kChunkElements < kNopeDim) w = doubled_bf16x8(w);  // the keys' factor 2
      q[b][2 * p] = low_bf16x4(w);
      q[b][2 * p + 1] = high_bf16x4(w);
    }
  }

  floatx4 o[kBlocks][Shape::kColumnBlocks] = {};
  // log2 units; row_max[b > 0] is the owner's running max of local block b, as last received.
  float row_max[kBlocks];
#pragma unroll
  for (int b = 0; b < kBlocks; ++b) row_max[b] = -INFINITY;
  floatx2 own_sums = {0.f, 0.f};  // block 0's sum of p over this lane's keys, in two parts (packed adds)
  const float scale_log2 = shape.sm_scale * kLog2e;

  // Stores the lane's shares of `share` into `lds`, each share's addresses recomputed where registers are short.
  auto store_tile = [&](SharedTiles& lds, KeyShare<kShareCount>& share) {
#pragma unroll
    for (int i = 0; i < kShareCount; ++i) {
      const StoreBytes at = {recomputed(store_at[i].key_base), recomputed(store_at[i].value_base)};
      store_key_share(keys, lds, share, i, at, share_spots[i].nope);
    }
  };

  // Tile t is in LDS while the key loads of tile t + 1 and the index loads of tile t + 2 are in flight: issued
  // during tile t - 1, they have a PV and a QK to arrive.
  KeyShare<kShareCount> next = {};  // zeros without a tile: a split without keys locates none
  int32_t next_index = fetch_tile(1);  // of the tile after `next`
  if (num_tiles > 0) next = load_tile(0, fetch_tile(0));
  store_tile(tiles[0], next);
  uint64_t valid_lanes = next.valid_lanes;  // of the tile in LDS
  if (num_tiles > 1) next = load_tile(1, next_index);
  next_index = fetch_tile(2);
  workgroup_barrier();
  // What a tile's softmax leaves for its PV: P^T of every block and, where a running max moved (rare), the factor
  // O of that block is rescaled by first (bit b of rescaled_blocks, wave-uniform).
  bf16x4 p_t[kBlocks];
  float factors[kBlocks];
  int rescaled_blocks = 0;
  auto accumulate_values = [&](const SharedTiles& lds) {
#pragma unroll
    for (int c = 0; c < Shape::kWaveReads; ++c) {
      const u32x4 v = reinterpret_cast<const u32x4*>(lds.values)[value_slots.at(c)];  // feeds every block
#pragma unroll
      for (int b = 0; b < kBlocks; ++b) {
        o[b][2 * c] = mfma_16x16x16_bf16(low_bf16x4(v), p_t[b], o[b][2 * c]);
        o[b][2 * c + 1] = mfma_16x16x16_bf16(high_bf16x4(v), p_t[b], o[b][2 * c + 1]);
      }
    }
  };
  // Tile `tile` from tiles[kBuffer], the next one stored into the other buffer. kBuffer is a constant (the loop
  // runs two tiles a trip), so the buffers' LDS addresses fold into the instructions' offsets. False: O must be
  // rescaled before the tile's PV, which the caller does outside the tile loop, so that in the loop the accumulators
  // are touched by MFMAs only (in AGPRs, at one wave a SIMD, a multiply there would move them through VGPRs on
  // every tile).
  auto run_tile = [&](int tile, auto buffer) -> bool {
    constexpr int kBuffer = decltype(buffer)::value;
    SharedTiles& lds = tiles[kBuffer];

    floatx4 s[kBlocks] = {};
#pragma unroll
    for (int p = 0; p < Shape::kWaveReads; ++p) {
      const u32x4 k = lds.keys[key_slots.at(p)];  // each key read feeds every block
#pragma unroll
      for (int b = 0; b < kBlocks; ++b) {
        s[b] = mfma_16x16x16_bf16(low_bf16x4(k), q[b][2 * p], s[b]);
        s[b] = mfma_16x16x16_bf16(high_bf16x4(k), q[b][2 * p + 1], s[b]);
      }
    }
    workgroup_barrier();  // every wave is done reading this tile's keys; the other buffer is free too
    HeadGroupExchange<Shape>& exchange = head_group_exchange<Shape>(lds);
#pragma unroll
    for (int b = 1; b < kBlocks; ++b) exchange.partial_scores[exchange.partial_entry(wave, b, lane)] = s[b];
    const uint64_t tile_valid_lanes = valid_lanes;
    if (tile + 1 < num_tiles) {
      store_tile(tiles[1 - kBuffer], next);
      valid_lanes = next.valid_lanes;
      if (tile + 2 < num_tiles) {
        next = load_tile(tile + 2, next_index);
        next_index = fetch_tile(tile + 3);
      }
    }
    workgroup_barrier();

    // The softmax of block 0: the whole row of scores is this wave's part plus the other parts' (their local block
    // kBlocks - b is this wave's block 0); a key that is not there scores -inf.
#pragma unroll
    for (int b = 1; b < kBlocks; ++b)
      s[0] += exchange.partial_scores[exchange.partial_entry(owner_of(b), kBlocks - b, lane)];
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
    rescaled_blocks = 0;
    if (wave_any(tile_max > row_max[0] + kRescaleThreshold)) {
      isa_rare_path();
      const float new_max = fmaxf(row_max[0], tile_max);
      factors[0] = new_max == row_max[0] ? 1.f : fast_exp2(row_max[0] - new_max);
      own_sums *= factors[0];
      row_max[0] = new_max;
      rescaled_blocks = 1;
    }
    const float reference = row_max[0] == -INFINITY ? 0.f : row_max[0];  // no valid key yet: all x are -inf
    const floatx2 shifted[2] = {floatx2{x[0], x[1]} - reference, floatx2{x[2], x[3]} - reference};
    float p[4];
#pragma unroll
    for (int e = 0; e < 4; ++e) p[e] = fast_exp2(shifted[e / 2][e % 2]);
    own_sums += floatx2{p[0], p[1]} + floatx2{p[2], p[3]};
    const u32x2 p_words = {pack_bf16x2_ties_away(p[0], p[1]), pack_bf16x2_ties_away(p[2], p[3])};
    p_t[0] = __builtin_bit_cast(bf16x4, p_words);
    // The other blocks' P^T and running max from their owners.
    exchange.weights[wave * kWaveSize + lane] =
        u32x4{p_words[0], p_words[1], __builtin_bit_cast(uint32_t, row_max[0]), 0};
    workgroup_barrier();
#pragma unroll
    for (int b = 1; b < kBlocks; ++b) {
      const u32x4 received = exchange.weights[owner_of(b) * kWaveSize + lane];
      p_t[b] = __builtin_bit_cast(bf16x4, u32x2{received[0], received[1]});
      const float owner_max = __builtin_bit_cast(float, received[2]);
      if (wave_any(owner_max != row_max[b])) {  // the owner moved it: O of block b follows
        isa_rare_path();
        // 0 from -inf (O is still zero then); 1 where this head's max did not move (both -inf: not NaN).
        factors[b] = owner_max == row_max[b] ? 1.f : fast_exp2(row_max[b] - owner_max);
        row_max[b] = owner_max;
        rescaled_blocks |= 1 << b;
      }
    }
    if (rescaled_blocks != 0) return false;
    accumulate_values(lds);
    return true;
  };

  // The tile loop, two tiles a trip; left for the rare rescale of O (then that tile's PV) and entered again, at an
  // odd tile too.
  const auto even = std::integral_constant<int, 0>();
  const auto odd = std::integral_constant<int, 1>();
  int tile = 0;
  for (;;) {
    bool rescale = tile % 2 == 1 && tile < num_tiles && !run_tile(tile, odd);
    if (!rescale && tile % 2 == 1) ++tile;
    for (; !rescale && tile < num_tiles; tile += 2) {
      if (!run_tile(tile, even)) {
        rescale = true;
      } else if (tile + 1 < num_tiles && !run_tile(tile + 1, odd)) {
        rescale = true;
        ++tile;
      }
      if (rescale) break;
    }
    if (!rescale) break;
#pragma unroll
    for (int b = 0; b < kBlocks; ++b) {
      if ((rescaled_blocks >> b) & 1) {
#pragma unroll
        for (int n = 0; n < Shape::kColumnBlocks; ++n) o[b][n] *= factors[b];
      }
    }
    accumulate_values(tiles[tile % 2]);
    ++tile;
  }

  const bool final_output = workspace.num_splits == 1;
  const int end_lane = recomputed(lane);  // nothing lane-dependent of the epilogue kept through the loop
  // The row sums: over the 4 lane groups (all lanes take part before any lane leaves), the other blocks' from their
  // owners.
  float row_sum[kBlocks];
  row_sum[0] = own_sums[0] + own_sums[1];
  row_sum[0] += shuffle_xor(row_sum[0], 16);
  row_sum[0] += shuffle_xor(row_sum[0], 32);
  workgroup_barrier();  // every wave is done with the tiles
  float* const sums = reinterpret_cast<float*>(tiles[0].keys);
  sums[wave * kWaveSize + end_lane] = row_sum[0];
  workgroup_barrier();
#pragma unroll
  for (int b = 1; b < kBlocks; ++b) row_sum[b] = sums[owner_of(b) * kWaveSize + end_lane];
#pragma unroll
  for (int b = 0; b < kBlocks; ++b) {
    const int head = head_of(b, end_lane % 16);
    if (head >= shape.num_heads) continue;
    const RowEnd end(row_sum[b], (row_max[b] + fast_log2(row_sum[b])) * kLn2, final_output, outputs.attn_sink, head);
    const int64_t out_row = int64_t(row) * shape.num_heads + head;
    const int64_t accum_row = (int64_t(split) * shape.num_rows + row) * shape.num_heads + head;
#pragma unroll
    for (int n = 0; n < Shape::kColumnBlocks; ++n) {
      const int first_column = 16 * (dim_part * Shape::kColumnBlocks + n);
      const int v = first_column + 4 * (end_lane / 16);  // element e is column v + e
      // The values' factor 2 on the nope columns (a column block is all nope or all rope).
      const bool doubled = Keys::kE4m3fnHalved && first_column < kNopeDim;
      const floatx4 values = o[b][n] * (doubled ? 2.f * end.scale : end.scale);
      if (final_output) {
        store_unaligned(outputs.out + out_row * kHeadDim + v,
                        u32x2{pack_bf16x2(values[0], values[1]), pack_bf16x2(values[2], values[3])});
      } else {
        store_unaligned(workspace.out_accum + accum_row * kHeadDim + v, values);
      }
    }
    if (dim_part == 0 && end_lane < 16) store_row_lse(outputs, workspace, shape, row, head, split, end.stored_lse);
  }
}

}  // namespace flash_mla::gfx942
