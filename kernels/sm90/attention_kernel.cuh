// The sm90 MLA decode kernel shared by both ops. One CTA runs 64 heads of one query row over one split of that
// row's key positions, 64 keys at a time, as a pipeline of three warpgroups around a ring of two bf16 key tiles
// ([64 keys x 512], 128-byte swizzled; K = V):
//   producer (warpgroup 2): locates a tile's keys (their indices fetched a tile ahead), loads their raw bytes into
//            registers, dequantizes each key into bf16 once and marks the tile full (an mbarrier); it refills a
//            tile when every math warp has marked it empty. For 128 heads a cluster of 2 CTAs splits the keys:
//            each producer writes its half into both CTAs' tiles, and a tile is refilled once both CTAs' math
//            warps are done with it.
//   math (warpgroups 0 and 1), per full tile:
//     QK:      warpgroup g computes S = Q K^T for all 64 heads x keys 32 g .. + 32 with wgmma from shared memory;
//              warp w keeps the rows of heads 16 (w % 4) .. + 16;
//     softmax: streaming, in the log2 domain, invalid keys at -inf; warps w and w ^ 4 (same heads, other keys)
//              swap row maxima and P fragments through shared memory (64-thread named barriers);
//     PV:      warpgroup g accumulates O += P V for all 64 heads and output dims 256 g .. + 256 with wgmma,
//              P straight from the S registers (warp w holds heads 16 (w % 4) ..).
// So the gather and dequantization of tile t + 1 run while the tensor cores work on tile t.
// With one split the CTA writes the final bf16 output and lse; with several it writes normalized fp32 partials
// and their lse, and combine.cu merges them.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "../common/kv_cache.h"
#include "../gpu/attention.h"
#include "../gpu/split_kv.h"
#include "key_sources.cuh"
#include "primitives.cuh"
#include "sm90_kernels.h"

namespace flash_mla::sm90 {

// The tile shape and the pipeline, in one place. The code below is written for exactly this shape, and the
// asserts stop a change it cannot follow: 64 heads on wgmma's M, a tile of 64 keys split 32 / 32 between the two
// math warpgroups for QK (wgmma m64n32k16; a warpgroup's key validity is one 32-lane ballot), 256 output dims a
// math warpgroup for PV (m64n256k16), one producer warpgroup with 8 threads a key.
constexpr int kMathWarpgroups = 2;
constexpr int kMathThreads = 128 * kMathWarpgroups;
constexpr int kMathWarps = kMathThreads / 32;
constexpr int kProducerThreads = 128;
constexpr int kThreads = kMathThreads + kProducerThreads;
constexpr int kKeyTiles = 2;                                       // the ring of bf16 key tiles
constexpr int kKeysPerWarpgroup = kKeysPerTile / kMathWarpgroups;  // QK's N
constexpr int kDimsPerWarpgroup = kHeadDim / kMathWarpgroups;      // PV's N
constexpr int kQkFragments = 64 * kKeysPerWarpgroup / 128;         // S floats a thread holds (m64n32: 16)
constexpr int kOutFragments = kDimsPerWarpgroup / 8;               // O float quads a thread holds (m64n256: 32)
constexpr int kKeySteps = kKeysPerTile / 16;                       // PV's k-steps of 16 keys
constexpr int kChunksPerRow = kHeadDim / 8;                        // 16-byte chunks of a bf16 row
constexpr int kKeysPerPass = kProducerThreads / kThreadsPerKey;    // keys the producer loads at once
static_assert(kHeadsPerCta == 64, "one CTA's heads are wgmma's M = 64");
static_assert(kKeysPerWarpgroup == 32, "QK is m64n32k16 a warpgroup, and a warpgroup's keys are one 32-bit ballot");
static_assert(kKeySteps == 2 * kKeysPerWarpgroup / 16, "PV's k-steps: this warpgroup's keys, then its partner's");
static_assert(kDimsPerWarpgroup == 256, "PV is m64n256k16 a warpgroup");
static_assert(kChunksPerRow == 8 * kThreadsPerKey, "a producer thread writes the chunks sub + 8 j of its key");

// Registers a thread: the launch gives every thread the same share (65536 / 384, a multiple of 8); the producer
// hands most of its share to the math warpgroups, which hold O (128 floats a thread), S and P.
constexpr int kLaunchRegisters = 65536 / kThreads / 8 * 8;
constexpr int kProducerRegisters = 136;
constexpr int kMathRegisters = 184;
static_assert(kMathThreads * kMathRegisters + kProducerThreads * kProducerRegisters <= kThreads * kLaunchRegisters,
              "the reallocated registers must fit the launch's");
static_assert(kProducerRegisters % 8 == 0 && kMathRegisters % 8 == 0, "setmaxnreg takes multiples of 8");

using QTile = SwizzledTile<kHeadsPerCta>;
using KTile = SwizzledTile<kKeysPerTile>;

struct SharedStorage {
  alignas(1024) uint8_t q[kHeadsPerCta * kHeadDim * 2];
  alignas(1024) uint8_t k[kKeyTiles][kKeysPerTile * kHeadDim * 2];
  uint64_t full[kKeyTiles];                 // mbarriers: the producers have written the tile
  uint64_t empty[kKeyTiles];                // mbarriers: every math warp is done reading it
  uint32_t valid[kKeyTiles][kKeysPerTile];  // whether the tile's key exists (else its row is zeros)
  // What a warp hands the warp with its heads in the other warpgroup, [item][lane] so stores hit 32 banks.
  uint32_t p_fragments[kMathWarps][kQkFragments / 2 * 32];  // its bf16 P for 16 heads x its 32 keys, A fragments
  float row_stats[kMathWarps][2 * 32];  // a row maximum, then (at the end) a row sum, for its two rows
};
// The dynamic shared-memory window is only 16-byte aligned: the kernel rounds its start up to 1024 bytes.
constexpr int kSharedBytes = int(sizeof(SharedStorage)) + 1024;
constexpr int kKTileDescriptorStep = kKeysPerTile * kHeadDim * 2 >> 4;  // a key tile in descriptor address units

// Arrivals that complete a phase: every thread of this CTA's producer (when the keys are shared, once the peer's
// asynchronous stores of its half, kPeerTileBytes, have landed too), and every math warp that reads the tile, in
// this CTA and (when shared) the peer.
constexpr int kFullArrivals = kProducerThreads;
constexpr int kPeerTileBytes = kKeysPerTile / 2 * (kHeadDim * 2 + int(sizeof(uint32_t)));
template <bool kShare>
constexpr int kEmptyArrivals = kMathWarps * (kShare ? 2 : 1);

// A round of the producer: Keys::kPassesPerRound keys of one tile, this thread's eighth of each, loaded into
// registers a round before they are dequantized.
template <class Keys>
struct KeyRound {
  typename Keys::Eighth eighths[Keys::kPassesPerRound];
  bool present[Keys::kPassesPerRound];
  Fp8Format format[Keys::kPassesPerRound];  // of the key's cache
};

// The producer warpgroup: fills key tile t % 2 for t = 0, 1, ... with this CTA's keys (all 64, or its half when
// kShare), 8 threads a key; `thread` is its index in the warpgroup. Loads run a round ahead of dequantization,
// across tiles too, so the gather latency of one round hides behind the dequantization of the previous one.
template <class Keys, bool kShare>
__device__ __forceinline__ void produce_key_tiles(SharedStorage& smem, const Keys& source, PositionRange range,
                                                  int num_tiles, int thread, uint32_t peer) {
  constexpr int kPasses = (kShare ? kKeysPerTile / 2 : kKeysPerTile) / kKeysPerPass;
  constexpr int kPassesPerRound = Keys::kPassesPerRound;
  constexpr int kRounds = kPasses / kPassesPerRound;
  static_assert(kPasses % kPassesPerRound == 0, "a CTA's keys are whole rounds");
  const int first_key = (kShare ? kKeysPerTile / 2 * int(peer ^ 1u) : 0) + thread / kThreadsPerKey;
  const int sub = thread % kThreadsPerKey;
  auto position_of = [&](int tile, int pass) {
    return range.begin + tile * kKeysPerTile + first_key + pass * kKeysPerPass;
  };

  // This thread's keys' token indices, fetched a tile ahead: a key's index is refetched as soon as it is resolved.
  int32_t index[kPasses];
  auto fetch = [&](int tile, int pass) {
    const int position = position_of(tile, pass);
    if (position < range.end) index[pass] = source.fetch(position);
  };
  // Issues the loads of round `round` of `tile`.
  auto load_round = [&](int tile, int round, KeyRound<Keys>& keys) {
#pragma unroll
    for (int i = 0; i < kPassesPerRound; ++i) {
      const int pass = round * kPassesPerRound + i;
      const int position = position_of(tile, pass);
      const TokenBytes bytes =
          position < range.end ? source.resolve(position, index[pass]) : TokenBytes{nullptr, nullptr, nullptr};
      if (tile + 1 < num_tiles) fetch(tile + 1, pass);
      keys.present[i] = bytes.nope != nullptr;
      keys.format[i] = source.format(position);
      if (keys.present[i]) keys.eighths[i] = source.load(bytes, sub);
    }
  };

  KeyRound<Keys> ahead;
  if (num_tiles > 0) {
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) fetch(0, pass);
    load_round(0, 0, ahead);
  }
  for (int tile = 0; tile < num_tiles; ++tile) {
    const int buffer = tile % kKeyTiles;
    const KTile k_tile{smem_address(smem.k[buffer])};
    const uint32_t full = smem_address(&smem.full[buffer]);
    const uint32_t peer_full = kShare ? peer_shared_address(full, peer) : 0u;
#pragma unroll
    for (int round = 0; round < kRounds; ++round) {
      const KeyRound<Keys> keys = ahead;
      if (round + 1 < kRounds) {
        load_round(tile, round + 1, ahead);
      } else if (tile + 1 < num_tiles) {
        load_round(tile + 1, 0, ahead);
      }
      if (round == 0) mbarrier_wait(smem_address(&smem.empty[buffer]), ((tile / kKeyTiles) & 1) ^ 1);
#pragma unroll
      for (int i = 0; i < kPassesPerRound; ++i) {
        const int key = first_key + (round * kPassesPerRound + i) * kKeysPerPass;
        const uint32_t row = k_tile.chunk(key, sub);  // chunk sub + 8 j is `row` + j slices, here and in the peer
        const uint32_t peer_row = kShare ? peer_shared_address(row, peer) : 0u;
        auto store = [&](int j, uint4 v) {
          st_shared_v4(row + j * KTile::kSliceBytes, v);
          if constexpr (kShare) st_async_v4(peer_row + j * KTile::kSliceBytes, v, peer_full);
        };
        if (keys.present[i]) {
          source.dequant(keys.eighths[i], keys.format[i], store);
        } else {
#pragma unroll
          for (int j = 0; j < kChunksPerRow / kThreadsPerKey; ++j) store(j, make_uint4(0, 0, 0, 0));  // 0 * NaN = NaN
        }
        if (sub == 0) {
          const uint32_t flag = smem_address(&smem.valid[buffer][key]);
          st_shared_u32(flag, keys.present[i]);
          if constexpr (kShare) st_async_u32(peer_shared_address(flag, peer), keys.present[i], peer_full);
        }
      }
    }
    // Each producer thread releases its own writes into this CTA (fenced for wgmma); the peer's writes complete on
    // the same barrier, as the bytes thread 0 announces.
    fence_proxy_async_shared();
    if (kShare && thread == 0) {
      mbarrier_arrive_expect_tx(full, kPeerTileBytes);
    } else {
      mbarrier_arrive(full);
    }
  }
}

// The math warpgroups: Q, then QK, softmax and PV over every key tile the producers fill, then the row ends.
template <bool kShare>
__device__ __forceinline__ void attend_key_tiles(SharedStorage& smem, const AttentionShape& shape,
                                                 const AttentionOutputs& outputs, const SplitKVWorkspace& workspace,
                                                 int row, int head_base, int split, int num_tiles, uint32_t peer) {
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const QTile q_tile{smem_address(smem.q)};

  // Q rows of this CTA's heads, read in place through q's strides (the binding keeps every q row 16-byte aligned:
  // backend q_alignment); heads past num_heads are zeros and are never written out. The copies overlap the
  // producer's first gather.
  const uint16_t* const q_row = shape.q.row(row);
  for (int item = tid; item < kHeadsPerCta * kChunksPerRow; item += kMathThreads) {
    const int r = item / kChunksPerRow, c = item % kChunksPerRow;
    const int head = head_base + r;
    if (head < shape.num_heads) {
      cp_async<16>(q_tile.chunk(r, c), q_row + head * shape.q.head_stride + 8 * c);
    } else {
      st_shared_v4(q_tile.chunk(r, c), make_uint4(0, 0, 0, 0));
    }
  }
  cp_async_commit();
  cp_async_wait<0>();
  fence_proxy_async_shared();  // wgmma reads Q
  math_barrier<kMathThreads>();

  const int head_slice = warp % 4;  // this warp's S / O rows: heads 16 * head_slice ..
  const int warpgroup = warp / 4;   // keys 32 * warpgroup .. in QK, output dims 256 * warpgroup .. in PV
  const int partner = warp ^ 4;     // the warp with the same heads in the other warpgroup
  const int group = lane / 4, quad = lane % 4;
  const float scale_log2 = shape.sm_scale * kLog2e;
  const uint64_t q_descriptor = k_major_sw128_descriptor(q_tile.base);
  const uint32_t k_base = smem_address(smem.k[0]);
  const uint64_t k_descriptor =
      k_major_sw128_descriptor(k_base + kKeysPerWarpgroup * warpgroup * 128);  // its keys' 128-byte rows
  // V = the key tile read N-major: this warpgroup's 256 output dims start at slice 4 warpgroup.
  const uint64_t v_descriptor =
      mn_major_sw128_descriptor<KTile::kSliceBytes>(k_base + 4 * warpgroup * KTile::kSliceBytes);

  float o[kOutFragments][4];
#pragma unroll
  for (int n = 0; n < kOutFragments; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY};  // scaled log2 domain, rows group and group + 8
  float row_sum[2] = {0.f, 0.f};              // this thread's keys; the quad and the partner are summed at the end

  for (int tile = 0; tile < num_tiles; ++tile) {
    const int buffer = tile % kKeyTiles;
    mbarrier_wait(smem_address(&smem.full[buffer]), (tile / kKeyTiles) & 1);
    const uint32_t valid = __ballot_sync(0xFFFFFFFFu, smem.valid[buffer][kKeysPerWarpgroup * warpgroup + lane] != 0);
    const uint64_t tile_step = uint64_t(buffer * kKTileDescriptorStep);

    // S = Q K^T over d = 512 for this warpgroup's 32 keys: 32 wgmma k-steps, 4 per 128-byte slice; a step
    // moves both descriptors' start addresses (in 16-byte units) by a constant.
    float s[kQkFragments];
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < kHeadDim / 16; ++ks) {
      const uint64_t step = ((ks / 4) * QTile::kSliceBytes + (ks % 4) * 32) >> 4;
      wgmma_m64n32k16_bf16(s, q_descriptor + step, k_descriptor + tile_step + step, ks > 0);
    }
    wgmma_commit();
    wgmma_wait<0>();

    // Streaming softmax. Key 32 warpgroup + 8n + 2 quad + (e & 1) of row group + 8 (e >> 1) is s[4n + e]; the
    // warp holding the same heads' other 32 keys (partner) swaps row maxima and P with this one.
    float tile_max[2] = {-INFINITY, -INFINITY};
#pragma unroll
    for (int n = 0; n < kQkFragments / 4; ++n) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const bool is_valid = ((valid >> (8 * n + 2 * quad + (e & 1))) & 1u) != 0;
        s[4 * n + e] = is_valid ? s[4 * n + e] * scale_log2 : -INFINITY;
        tile_max[e >> 1] = fmaxf(tile_max[e >> 1], s[4 * n + e]);
      }
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xFFFFFFFFu, tile_max[r], 1));
      tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(0xFFFFFFFFu, tile_max[r], 2));
      smem.row_stats[warp][r * 32 + lane] = tile_max[r];
    }
    pair_barrier(head_slice);
    float rescale[2], reference[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const float new_max = fmaxf(row_max[r], fmaxf(tile_max[r], smem.row_stats[partner][r * 32 + lane]));
      reference[r] = new_max == -INFINITY ? 0.f : new_max;  // keeps -inf - -inf out of exp2
      rescale[r] = exp2f(row_max[r] - reference[r]);
      row_max[r] = new_max;
      row_sum[r] *= rescale[r];
    }
    if (__any_sync(0xFFFFFFFFu, rescale[0] != 1.f || rescale[1] != 1.f)) {  // rare once the maxima settle
#pragma unroll
      for (int n = 0; n < kOutFragments; ++n) {
        o[n][0] *= rescale[0], o[n][1] *= rescale[0];
        o[n][2] *= rescale[1], o[n][3] *= rescale[1];
      }
    }
    uint32_t own[kKeySteps / 2][4];  // A fragments of P for this warp's k-steps of 16 keys
#pragma unroll
    for (int n = 0; n < kQkFragments / 4; ++n) {
      float e[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        e[i] = exp2f(s[4 * n + i] - reference[i >> 1]);
        row_sum[i >> 1] += e[i];
      }
      own[n / 2][2 * (n % 2)] = pack_bf16x2(e[0], e[1]);
      own[n / 2][2 * (n % 2) + 1] = pack_bf16x2(e[2], e[3]);
    }
#pragma unroll
    for (int i = 0; i < kQkFragments / 2; ++i) smem.p_fragments[warp][i * 32 + lane] = own[i / 4][i % 4];
    pair_barrier(head_slice);
    uint32_t p[kKeySteps][4];  // all k-steps in key order: warpgroup 0's keys, then warpgroup 1's
#pragma unroll
    for (int i = 0; i < kQkFragments / 2; ++i) {
      const uint32_t other = smem.p_fragments[partner][i * 32 + lane];
      p[i / 4][i % 4] = warpgroup == 0 ? own[i / 4][i % 4] : other;
      p[kKeySteps / 2 + i / 4][i % 4] = warpgroup == 0 ? other : own[i / 4][i % 4];
    }

    // O += P V: warpgroup warpgroup multiplies P [64 heads x 64 keys] (registers) by V [64 keys x its 256
    // dims] (shared memory, d contiguous), 4 wgmma k-steps of 16 keys.
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kKeySteps; ++kk) {
      wgmma_m64n256k16_bf16_rs(o, p[kk], v_descriptor + tile_step + ((kk * 16 * 128) >> 4));
    }
    wgmma_commit();
    wgmma_wait<0>();
    __syncwarp();     // every lane's reads of the tile (its validity flags) before the release
    if (lane == 0) {  // this warp is done with the tile
      const uint32_t empty = smem_address(&smem.empty[buffer]);
      mbarrier_arrive(empty);
      if constexpr (kShare) mbarrier_arrive(peer_shared_address(empty, peer));
    }
  }

  // Epilogue: rows group and group + 8 of this warp's 16 heads; the partner's keys summed in first. The partner
  // read this warp's last row maxima before the last pair barrier, so the slots are free.
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_sum[r] += __shfl_xor_sync(0xFFFFFFFFu, row_sum[r], 1);
    row_sum[r] += __shfl_xor_sync(0xFFFFFFFFu, row_sum[r], 2);
    smem.row_stats[warp][r * 32 + lane] = row_sum[r];
  }
  pair_barrier(head_slice);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    row_sum[r] += smem.row_stats[partner][r * 32 + lane];
    const int head = head_base + 16 * head_slice + group + 8 * r;
    if (head >= shape.num_heads) continue;
    const bool final_output = workspace.num_splits == 1;
    const RowEnd end(row_sum[r], (row_max[r] + __log2f(row_sum[r])) * kLn2, final_output, outputs.attn_sink, head);
    const int64_t out_row = int64_t(row) * shape.num_heads + head;
    const int64_t accum_row = (int64_t(split) * shape.num_rows + row) * shape.num_heads + head;
#pragma unroll
    for (int n = 0; n < kOutFragments; ++n) {
      const int d = kDimsPerWarpgroup * warpgroup + 8 * n + 2 * quad;
      const float x = o[n][2 * r] * end.scale, y = o[n][2 * r + 1] * end.scale;
      if (final_output) {
        *reinterpret_cast<uint32_t*>(outputs.out + out_row * kHeadDim + d) = pack_bf16x2(x, y);
      } else {
        *reinterpret_cast<float2*>(workspace.out_accum + accum_row * kHeadDim + d) = make_float2(x, y);
      }
    }
    if (warpgroup == 0 && quad == 0) store_row_lse(outputs, workspace, shape, row, head, split, end.stored_lse);
  }
}

// kShare: the CTA is one of a cluster of 2 that runs heads 0..63 and 64..127 of the same query row; each producer
// dequantizes half of every tile's keys and writes them into both CTAs' key tiles.
template <class Keys, bool kShare>
__global__ void __launch_bounds__(kThreads, 1)
    attention_kernel(const __grid_constant__ typename Keys::Params params, const AttentionShape shape,
                     const AttentionOutputs outputs, const SplitKVWorkspace workspace) {
  extern __shared__ __align__(128) uint8_t smem_raw[];
  SharedStorage& smem = *reinterpret_cast<SharedStorage*>(smem_raw + (-smem_address(smem_raw) & 1023));
  const int row = blockIdx.x;
  const int head_base = blockIdx.y * kHeadsPerCta;
  const int split = blockIdx.z;
  const uint32_t peer = kShare ? cluster_rank() ^ 1u : 0u;

  const Keys source(params, row);
  const PositionRange range = split_positions(source.num_positions(), split, workspace.num_splits, kKeysPerTile);
  const int num_tiles = (range.end - range.begin + kKeysPerTile - 1) / kKeysPerTile;

  if (threadIdx.x == 0) {
    for (int b = 0; b < kKeyTiles; ++b) {
      mbarrier_init(smem_address(&smem.full[b]), kFullArrivals);
      mbarrier_init(smem_address(&smem.empty[b]), kEmptyArrivals<kShare>);
    }
    fence_mbarrier_init();
  }
  if constexpr (kShare) {
    cluster_sync();  // the peer's barriers are initialized before anything arrives on them
  } else {
    __syncthreads();
  }

  if (threadIdx.x >= kMathThreads) {
    registers_decrease_to<kProducerRegisters>();
    produce_key_tiles<Keys, kShare>(smem, source, range, num_tiles, threadIdx.x - kMathThreads, peer);
  } else {
    registers_increase_to<kMathRegisters>();
    attend_key_tiles<kShare>(smem, shape, outputs, workspace, row, head_base, split, num_tiles, peer);
  }
  if constexpr (kShare) cluster_sync();  // the peer may still write into this CTA's tiles and barriers
}

}  // namespace flash_mla::sm90
