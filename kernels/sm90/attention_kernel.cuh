// The sm90 MLA decode kernel shared by both ops. One CTA of 8 warps (2 warpgroups) runs 64 heads of one query
// row over one split of that row's key positions, 64 keys at a time:
//   1. locate: 64 threads map the next tile's positions to token bytes (TokenBytes, in shared memory), their
//              indices fetched one tile ahead;
//   2. stage:  all threads copy the raw tokens with cp.async into the other half of a double buffer, so the
//              gather of tile t + 1 overlaps the math of tile t;
//   3. dequant: each key is turned into bf16 once, into a 128-byte-swizzled [64 keys x 512] tile (K = V); for
//              128 heads a cluster of 2 CTAs splits the keys and each writes its half into both tiles;
//   4. QK:     warpgroup g computes S = Q K^T for all 64 heads x keys 32 g .. + 32 with wgmma from shared memory;
//              warp w keeps the rows of heads 16 (w % 4) .. + 16;
//   5. softmax: streaming, in the log2 domain, invalid keys at -inf; warps w and w ^ 4 (same heads, other keys)
//              swap row maxima and P fragments through shared memory (64-thread named barriers);
//   6. PV:     warpgroup g accumulates O += P V for all 64 heads and output dims 256 g .. + 256 with wgmma,
//              P straight from the S registers (warp w holds heads 16 (w % 4) ..).
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

// The tile shape, in one place. The code below is written for exactly this shape, and the asserts stop a change
// it cannot follow: 64 heads on wgmma's M, a tile of 64 keys split 32 / 32 between two warpgroups for QK (wgmma
// m64n32k16; a warpgroup's key validity is one 32-lane ballot), 256 output dims a warpgroup for PV (m64n256k16).
constexpr int kWarpgroups = 2;
constexpr int kThreads = 128 * kWarpgroups;
constexpr int kWarps = kThreads / 32;
constexpr int kKeysPerWarpgroup = kKeysPerTile / kWarpgroups;  // QK's N
constexpr int kDimsPerWarpgroup = kHeadDim / kWarpgroups;      // PV's N
constexpr int kQkFragments = 64 * kKeysPerWarpgroup / 128;     // S floats a thread holds (m64n32: 16)
constexpr int kOutFragments = kDimsPerWarpgroup / 8;           // O float quads a thread holds (m64n256: 32)
constexpr int kKeySteps = kKeysPerTile / 16;                   // PV's k-steps of 16 keys
constexpr int kChunksPerRow = kHeadDim / 8;                    // 16-byte chunks of a bf16 row
static_assert(kHeadsPerCta == 64, "one CTA's heads are wgmma's M = 64");
static_assert(kKeysPerWarpgroup == 32, "QK is m64n32k16 a warpgroup, and a warpgroup's keys are one 32-bit ballot");
static_assert(kKeySteps == 2 * kKeysPerWarpgroup / 16, "PV's k-steps: this warpgroup's keys, then its partner's");
static_assert(kDimsPerWarpgroup == 256, "PV is m64n256k16 a warpgroup");

using QTile = SwizzledTile<kHeadsPerCta>;
using KTile = SwizzledTile<kKeysPerTile>;

struct SharedStorage {
  alignas(1024) uint8_t q[kHeadsPerCta * kHeadDim * 2];
  alignas(1024) uint8_t k[kKeysPerTile * kHeadDim * 2];
  alignas(128) uint8_t staged[2][kKeysPerTile * kStagedKeyBytes];
  TokenBytes keys[2][kKeysPerTile];
  // What a warp hands the warp with its heads in the other warpgroup, [item][lane] so stores hit 32 banks.
  uint32_t p_fragments[kWarps][kQkFragments / 2 * 32];  // its bf16 P for 16 heads x its 32 keys, as A fragments
  float row_stats[kWarps][2 * 32];                      // a row maximum, then (at the end) a row sum, for its two rows
};
// The dynamic shared-memory window is only 16-byte aligned: the kernel rounds its start up to 1024 bytes.
constexpr int kSharedBytes = int(sizeof(SharedStorage)) + 1024;

// Staging and dequantization give each key 8 threads: thread (key, sub = tid % 8) handles the 16-byte output
// chunks c = sub + 8 j of its key (j = 0..6: nope tile j; j = 7: rope) and the matching 8-byte input chunks, so
// every offset below is a compile-time constant from a per-thread base. 256 threads cover 32 keys a pass.
constexpr int kThreadsPerKey = 8;
constexpr int kKeysPerPass = kThreads / kThreadsPerKey;

template <class Keys, int kBytes>
__device__ __forceinline__ void copy_to_shared(uint8_t* dst, const uint8_t* src) {
  if constexpr (Keys::kAligned) {
    cp_async<kBytes>(smem_address(dst), src);
  } else {
#pragma unroll
    for (int i = 0; i < kBytes; ++i) dst[i] = __ldg(src + i);  // a cache at an unaligned address
  }
}

// Copies the raw bytes of this thread's eighth of its key into the staging buffer (cp.async: asynchronous).
template <class Keys>
__device__ __forceinline__ void stage_key(const TokenBytes& bytes, uint8_t* staged_key, int sub) {
  if (bytes.nope == nullptr) return;
#pragma unroll
  for (int i = 0; i < kNopeDim / 64; ++i) {
    copy_to_shared<Keys, 8>(staged_key + 8 * sub + 64 * i, bytes.nope + 8 * sub + 64 * i);
  }
#pragma unroll
  for (int i = 0; i < 2 * kRopeDim / 64; ++i) {
    copy_to_shared<Keys, 8>(staged_key + kStagedRopeOffset + 8 * sub + 64 * i, bytes.rope + 8 * sub + 64 * i);
  }
  if (sub < Keys::kScaleChunks) {
    copy_to_shared<Keys, Keys::kScaleChunkBytes>(staged_key + kStagedScaleOffset + Keys::kScaleChunkBytes * sub,
                                                 bytes.scales + Keys::kScaleChunkBytes * sub);
  }
}

// Dequantizes this thread's eighth of a staged key into row `key` of the bf16 key tile, and of the peer CTA's
// tile too when kShare; a skipped key becomes zeros (its P is 0, and 0 * NaN would be NaN).
template <class Keys, bool kShare>
__device__ __forceinline__ void dequant_key(const Keys& source, const TokenBytes& bytes, const uint8_t* staged_key,
                                            KTile k_tile, int key, int sub, uint32_t peer) {
  const uint32_t row = k_tile.chunk(key, sub);  // chunk sub + 8 j is `row` + j slices, here and in the peer
  const uint32_t peer_row = kShare ? peer_shared_address(row, peer) : 0u;
  auto store = [&](int j, uint4 v) {
    st_shared_v4(row + j * KTile::kSliceBytes, v);
    if constexpr (kShare) st_cluster_v4(peer_row + j * KTile::kSliceBytes, v);
  };
  if (bytes.nope == nullptr) {
#pragma unroll
    for (int j = 0; j < 8; ++j) store(j, make_uint4(0, 0, 0, 0));
    return;
  }
  const typename Keys::KeyScales scales = source.load_scales(staged_key);
#pragma unroll
  for (int j = 0; j < kNumScaleTiles; ++j) {
    store(j, source.dequant_chunk(*reinterpret_cast<const uint2*>(staged_key + 8 * sub + 64 * j), scales, j));
  }
  store(kNumScaleTiles, *reinterpret_cast<const uint4*>(staged_key + kStagedRopeOffset + 16 * sub));
}

// kShare: the CTA is one of a cluster of 2 that runs heads 0..63 and 64..127 of the same query row; each stages
// and dequantizes half of every tile's keys and writes them into both CTAs' key tiles.
template <class Keys, bool kShare>
__global__ void __launch_bounds__(kThreads, 1)
    attention_kernel(const __grid_constant__ typename Keys::Params params, const AttentionShape shape,
                     const AttentionOutputs outputs, const SplitKVWorkspace workspace) {
  extern __shared__ __align__(128) uint8_t smem_raw[];
  SharedStorage& smem = *reinterpret_cast<SharedStorage*>(smem_raw + (-smem_address(smem_raw) & 1023));
  const int row = blockIdx.x;
  const int head_base = blockIdx.y * kHeadsPerCta;
  const int split = blockIdx.z;
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;

  const Keys source(params, row);
  const PositionRange range = split_positions(source.num_positions(), split, workspace.num_splits, kKeysPerTile);
  const int num_tiles = (range.end - range.begin + kKeysPerTile - 1) / kKeysPerTile;
  const QTile q_tile{smem_address(smem.q)};
  const KTile k_tile{smem_address(smem.k)};

  // Q rows of this CTA's heads, read in place through q's strides and copied asynchronously with the first tile's
  // keys (the binding keeps every q row 16-byte aligned: backend q_alignment); heads past num_heads are zeros and
  // are never written out. The first tile's wait and proxy fence cover these copies too.
  const uint16_t* const q_row = shape.q.row(row);
  for (int item = tid; item < kHeadsPerCta * kChunksPerRow; item += kThreads) {
    const int r = item / kChunksPerRow, c = item % kChunksPerRow;
    const int head = head_base + r;
    if (head < shape.num_heads) {
      cp_async<16>(q_tile.chunk(r, c), q_row + head * shape.q.head_stride + 8 * c);
    } else {
      st_shared_v4(q_tile.chunk(r, c), make_uint4(0, 0, 0, 0));
    }
  }

  // Threads 0..63 locate the keys of a tile, one each: the index of tile t + 1 was fetched an iteration earlier
  // (`fetched`), so its global-load latency is hidden behind tile t - 1.
  int32_t fetched = 0;
  auto fetch_tile = [&](int tile) {
    const int position = range.begin + tile * kKeysPerTile + tid;
    if (tid < kKeysPerTile && position < range.end) fetched = source.fetch(position);
  };
  auto locate_tile = [&](int tile, int buffer) {
    if (tid < kKeysPerTile) {
      const int position = range.begin + tile * kKeysPerTile + tid;
      smem.keys[buffer][tid] =
          position < range.end ? source.resolve(position, fetched) : TokenBytes{nullptr, nullptr, nullptr};
    }
  };

  const int head_slice = warp % 4;  // this warp's S / O rows: heads 16 * head_slice ..
  const int warpgroup = warp / 4;   // keys 32 * warpgroup .. in QK, output dims 256 * warpgroup .. in PV
  const int partner = warp ^ 4;     // the warp with the same heads in the other warpgroup
  const int group = lane / 4, quad = lane % 4;
  const float scale_log2 = shape.sm_scale * kLog2e;
  const uint64_t q_descriptor = k_major_sw128_descriptor(q_tile.base);
  const uint64_t k_descriptor =
      k_major_sw128_descriptor(k_tile.base + kKeysPerWarpgroup * warpgroup * 128);  // its keys' 128-byte rows
  // V = the key tile read N-major: this warpgroup's 256 output dims start at slice 4 warpgroup.
  const uint64_t v_descriptor =
      mn_major_sw128_descriptor<KTile::kSliceBytes>(k_tile.base + 4 * warpgroup * KTile::kSliceBytes);

  float o[kOutFragments][4];
#pragma unroll
  for (int n = 0; n < kOutFragments; ++n) o[n][0] = o[n][1] = o[n][2] = o[n][3] = 0.f;
  float row_max[2] = {-INFINITY, -INFINITY};  // scaled log2 domain, rows group and group + 8
  float row_sum[2] = {0.f, 0.f};              // this thread's keys; the quad and the partner are summed at the end

  // The keys this CTA stages and dequantizes: all 64, or its half when it shares them with its cluster peer.
  constexpr int kPasses = (kShare ? kKeysPerTile / 2 : kKeysPerTile) / kKeysPerPass;
  const uint32_t peer = kShare ? cluster_rank() ^ 1u : 0u;
  const int first_key = (kShare ? kKeysPerTile / 2 * int(peer ^ 1u) : 0) + tid / kThreadsPerKey;
  const int sub = tid % kThreadsPerKey;
  auto stage_tile = [&](int buffer) {
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      const int key = first_key + pass * kKeysPerPass;
      stage_key<Keys>(smem.keys[buffer][key], smem.staged[buffer] + key * kStagedKeyBytes, sub);
    }
  };
  // Everyone who writes this CTA's key tile (its own threads, and the peer's when shared) passes here first.
  auto tile_barrier = [] {
    if constexpr (kShare) {
      cluster_sync();
    } else {
      __syncthreads();
    }
  };

  if (num_tiles > 0) {
    fetch_tile(0);
    locate_tile(0, 0);
    fetch_tile(1);
    __syncthreads();
    stage_tile(0);
  }
  cp_async_commit();

  for (int tile = 0; tile < num_tiles; ++tile) {
    const int buffer = tile & 1;
    if (tile + 1 < num_tiles) {
      locate_tile(tile + 1, buffer ^ 1);
      fetch_tile(tile + 2);
    }
    tile_barrier();  // next tile's TokenBytes visible; every reader of the key tile is done with the previous one
    if (tile + 1 < num_tiles) stage_tile(buffer ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();  // this tile's staged bytes visible
#pragma unroll
    for (int pass = 0; pass < kPasses; ++pass) {
      const int key = first_key + pass * kKeysPerPass;
      dequant_key<Keys, kShare>(source, smem.keys[buffer][key], smem.staged[buffer] + key * kStagedKeyBytes, k_tile,
                                key, sub, peer);
    }
    if constexpr (kShare) {
      fence_proxy_async_cluster();  // wgmma in both CTAs reads the key tile
    } else {
      fence_proxy_async_shared();  // wgmma reads the key tile
    }
    // Read this tile's key validity before the barrier: the next iteration's locate rewrites the other buffer,
    // and the one after it this one.
    const uint32_t valid_lo = __ballot_sync(0xFFFFFFFFu, smem.keys[buffer][lane].nope != nullptr);
    const uint32_t valid_hi = __ballot_sync(0xFFFFFFFFu, smem.keys[buffer][lane + kKeysPerWarpgroup].nope != nullptr);
    tile_barrier();  // bf16 key tile complete

    // 4. S = Q K^T over d = 512 for this warpgroup's 32 keys: 32 wgmma k-steps, 4 per 128-byte slice; a step
    // moves both descriptors' start addresses (in 16-byte units) by a constant.
    float s[kQkFragments];
    wgmma_fence();
#pragma unroll
    for (int ks = 0; ks < kHeadDim / 16; ++ks) {
      const uint64_t step = ((ks / 4) * QTile::kSliceBytes + (ks % 4) * 32) >> 4;
      wgmma_m64n32k16_bf16(s, q_descriptor + step, k_descriptor + step, ks > 0);
    }
    wgmma_commit();
    wgmma_wait<0>();

    // 5. Streaming softmax. Key 32 warpgroup + 8n + 2 quad + (e & 1) of row group + 8 (e >> 1) is s[4n + e]; the
    // warp holding the same heads' other 32 keys (partner) swaps row maxima and P with this one.
    const uint32_t valid = warpgroup == 0 ? valid_lo : valid_hi;
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

    // 6. O += P V: warpgroup warpgroup multiplies P [64 heads x 64 keys] (registers) by V [64 keys x its 256
    // dims] (shared memory, d contiguous), 4 wgmma k-steps of 16 keys.
    wgmma_fence();
#pragma unroll
    for (int kk = 0; kk < kKeySteps; ++kk) {
      wgmma_m64n256k16_bf16_rs(o, p[kk], v_descriptor + ((kk * 16 * 128) >> 4));
    }
    wgmma_commit();
    wgmma_wait<0>();
  }
  cp_async_wait<0>();

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

}  // namespace flash_mla::sm90
