// The gfx942 (CDNA3) operations the kernels are written in: wave64 lane queries, workgroup barriers, cross-lane
// exchange, fast transcendental functions and the bf16 MFMA, each a one-line wrapper of its AMDGPU builtin.
// Builtins, not HIP's device library: a device-only build (-nogpulib) then has no external calls, and the test-only
// emulation (emulation/include/hip/hip_runtime.h, first on its include path) defines the same builtins for the host
// CPU.
#pragma once

#include <hip/hip_runtime.h>

#include <cstdint>
#include <type_traits>

#include "../common/host_device.h"

namespace flash_mla::gfx942 {

constexpr int kWaveSize = 64;

// MFMA operands: 4 bf16 (as 16-bit patterns) per lane in, 4 fp32 per lane accumulated; raw 8/16-byte words.
typedef short bf16x4 __attribute__((vector_size(8)));
typedef float floatx4 __attribute__((vector_size(16)));
typedef float floatx2 __attribute__((vector_size(8)));
typedef uint32_t u32x2 __attribute__((vector_size(8)));
typedef uint32_t u32x4 __attribute__((vector_size(16)));

// A converter's pair of floats (an ext_vector on the device, a struct under emulation) as a floatx2.
template <class Pair>
__device__ __forceinline__ floatx2 as_floatx2(const Pair& pair) {
  return floatx2{pair[0], pair[1]};
}

// The low and the high 8 bytes of a 16-byte word, as MFMA operands.
__device__ __forceinline__ bf16x4 low_bf16x4(u32x4 w) { return __builtin_bit_cast(bf16x4, u32x2{w[0], w[1]}); }
__device__ __forceinline__ bf16x4 high_bf16x4(u32x4 w) { return __builtin_bit_cast(bf16x4, u32x2{w[2], w[3]}); }

__device__ __forceinline__ int thread_index() { return __builtin_amdgcn_workitem_id_x(); }
__device__ __forceinline__ int lane_index() {
  return __builtin_amdgcn_mbcnt_hi(~0u, __builtin_amdgcn_mbcnt_lo(~0u, 0u));
}
__device__ __forceinline__ int workgroup_index_x() { return __builtin_amdgcn_workgroup_id_x(); }
__device__ __forceinline__ int workgroup_index_y() { return __builtin_amdgcn_workgroup_id_y(); }
__device__ __forceinline__ int workgroup_index_z() { return __builtin_amdgcn_workgroup_id_z(); }
// The wave's index in the workgroup, as a wave-uniform (scalar) value: branches on it need no lane masks.
__device__ __forceinline__ int wave_index() { return __builtin_amdgcn_readfirstlane(thread_index() / kWaveSize); }

// Every wave of the workgroup has arrived, and its LDS writes are visible.
__device__ __forceinline__ void workgroup_barrier() {
  __builtin_amdgcn_fence(__ATOMIC_RELEASE, "workgroup");
  __builtin_amdgcn_s_barrier();
  __builtin_amdgcn_fence(__ATOMIC_ACQUIRE, "workgroup");
}

// The value of lane (this lane ^ mask).
__device__ __forceinline__ float shuffle_xor(float value, int mask) {
  const int source = (lane_index() ^ mask) * 4;  // ds_bpermute addresses lanes in bytes
  return __builtin_bit_cast(float, __builtin_amdgcn_ds_bpermute(source, __builtin_bit_cast(int, value)));
}

// Within each group of 4 lanes, the value of the group's lane kSource (DPP quad_perm [s, s, s, s]: a VALU move).
template <int kSource>
__device__ __forceinline__ uint32_t quad_broadcast(uint32_t value) {
  return uint32_t(__builtin_amdgcn_mov_dpp(int(value), kSource * 0x55, 0xF, 0xF, false));
}

template <int kSource>
__device__ __forceinline__ float quad_broadcast(float value) {
  return __builtin_bit_cast(float, quad_broadcast<kSource>(__builtin_bit_cast(uint32_t, value)));
}

template <int kSource>
__device__ __forceinline__ const uint8_t* quad_broadcast(const uint8_t* pointer) {
  const u32x2 halves = __builtin_bit_cast(u32x2, pointer);  // a register pair: no arithmetic to join the halves
  const u32x2 moved = {quad_broadcast<kSource>(halves[0]), quad_broadcast<kSource>(halves[1])};
  return __builtin_bit_cast(const uint8_t*, moved);
}

// f(std::integral_constant<int, i>()) for the quad's lanes i = 0..3, each a compile-time quad_broadcast source.
template <class F>
__device__ __forceinline__ void for_each_quad_lane(F&& f) {
  f(std::integral_constant<int, 0>());
  f(std::integral_constant<int, 1>());
  f(std::integral_constant<int, 2>());
  f(std::integral_constant<int, 3>());
}

// Bit l: the predicate on lane l (inactive lanes give 0); the same mask on every lane.
__device__ __forceinline__ uint64_t wave_ballot(bool predicate) { return __builtin_amdgcn_ballot_w64(predicate); }

// Whether the predicate holds on any active lane of the wave (the same answer on every lane).
__device__ __forceinline__ bool wave_any(bool predicate) { return wave_ballot(predicate) != 0; }

// if_set on the lanes whose bit of `lanes` (wave-uniform, a scalar register pair) is set, else if_clear: one
// v_cndmask with the mask as its condition, where testing a bit per lane would take two more VALU.
__device__ __forceinline__ float select_by_lane_mask(uint64_t lanes, float if_clear, float if_set) {
#if defined(__HIP_DEVICE_COMPILE__)
  float result;
  asm("v_cndmask_b32_e64 %0, %1, %2, %3" : "=v"(result) : "v"(if_clear), "v"(if_set), "s"(lanes));
  return result;
#else
  return (lanes >> lane_index()) & 1u ? if_set : if_clear;
#endif
}

__device__ __forceinline__ float fast_exp2(float x) { return __builtin_amdgcn_exp2f(x); }  // v_exp_f32: exp2(-inf) = 0
__device__ __forceinline__ float fast_log2(float x) { return __builtin_amdgcn_logf(x); }   // v_log_f32: log2

// D = A * B + C on a 16x16x16 block (v_mfma_f32_16x16x16_bf16). CDNA3 lane layouts, lane l = 16 * g + r:
// A[i][k]: lane i + 16 * (k / 4), element k % 4;  B[k][j]: lane j + 16 * (k / 4), element k % 4;
// C, D[i][j]: lane j + 16 * (i / 4), element i % 4.
__device__ __forceinline__ floatx4 mfma_16x16x16_bf16(bf16x4 a, bf16x4 b, floatx4 c) {
  return __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(a, b, c, 0, 0, 0);
}

// Global memory of any alignment. gfx942 loads and stores unaligned dwords; naming the global address space (and
// alignment 1) keeps the access one wide instruction instead of bytes. A host compile (HIP's host pass, the
// emulation) has no address spaces and copies bytes.
template <class T>
__device__ __forceinline__ T load_unaligned(const void* address) {
#if defined(__HIP_DEVICE_COMPILE__)
  typedef T __attribute__((aligned(1))) Unaligned;
  return *reinterpret_cast<const __attribute__((address_space(1))) Unaligned*>(reinterpret_cast<uintptr_t>(address));
#else
  T value;
  __builtin_memcpy(&value, address, sizeof(T));
  return value;
#endif
}

template <class T>
__device__ __forceinline__ void store_unaligned(void* address, T value) {
#if defined(__HIP_DEVICE_COMPILE__)
  typedef T __attribute__((aligned(1))) Unaligned;
  *reinterpret_cast<__attribute__((address_space(1))) Unaligned*>(reinterpret_cast<uintptr_t>(address)) = value;
#else
  __builtin_memcpy(address, &value, sizeof(T));
#endif
}

// Global memory read through a raw buffer resource (4 scalar registers: base, size, format): a load at a lane offset
// at or past `size` bytes reads zeros instead of memory, checked by the hardware. The lane offset (the instruction's
// constant part included) is checked; a wave-uniform offset added to it may not be (callers keep lane offset +
// uniform offset + the load's bytes inside the record the lane offset starts in). The host (HIP's host pass, the
// emulation) reads the same bytes and zeros.
struct CheckedRange {
#if defined(__HIP_DEVICE_COMPILE__)
  typedef int32_t Resource __attribute__((ext_vector_type(4)));
  Resource resource;
#else
  const uint8_t* base;
  uint32_t size;
#endif
};

#if defined(__HIP_DEVICE_COMPILE__)
// The buffer load intrinsics by their LLVM names (the clang builtins for them are newer than LLVM 17).
__device__ uint32_t raw_buffer_load_b32(CheckedRange::Resource resource, int lane_offset, int uniform_offset,
                                        int cache_policy) __asm("llvm.amdgcn.raw.buffer.load.i32");
__device__ u32x2 raw_buffer_load_b64(CheckedRange::Resource resource, int lane_offset, int uniform_offset,
                                     int cache_policy) __asm("llvm.amdgcn.raw.buffer.load.v2i32");
#endif

// base and size wave-uniform.
__device__ __forceinline__ CheckedRange checked_range(const void* base, uint32_t size) {
#if defined(__HIP_DEVICE_COMPILE__)
  const uint64_t address = reinterpret_cast<uintptr_t>(base);
  // Word 1: the high address bits and stride 0 (a raw buffer); word 3: gfx9's 32-bit data format, no swizzle.
  return {{int32_t(uint32_t(address)), int32_t(uint32_t(address >> 32) & 0xFFFFu), int32_t(size), 0x00020000}};
#else
  return {static_cast<const uint8_t*>(base), size};
#endif
}

// A uint32_t or a u32x2 at lane_offset + uniform_offset bytes into `range`, or zeros.
template <class T>
__device__ __forceinline__ T load_checked(const CheckedRange& range, uint32_t lane_offset, uint32_t uniform_offset) {
  static_assert(std::is_same_v<T, uint32_t> || std::is_same_v<T, u32x2>, "a dword or two");
#if defined(__HIP_DEVICE_COMPILE__)
  if constexpr (std::is_same_v<T, uint32_t>) {
    return raw_buffer_load_b32(range.resource, int(lane_offset), int(uniform_offset), 0);
  } else {
    return raw_buffer_load_b64(range.resource, int(lane_offset), int(uniform_offset), 0);
  }
#else
  if (lane_offset >= range.size) return T{};
  if (lane_offset + uniform_offset + sizeof(T) > range.size) __builtin_trap();  // a caller broke the contract above
  T value;
  __builtin_memcpy(&value, range.base + lane_offset + uniform_offset, sizeof(T));
  return value;
#endif
}

// Marks the branch it sits in as rarely taken, so that the ISA report (.ci/gfx942_isa_report.py) counts a key tile
// without it. The mark is an AMDGPU assembly comment: device code only.
__device__ __forceinline__ void isa_rare_path() {
#if defined(__HIP_DEVICE_COMPILE__)
  asm volatile("; flash_mla isa: rare path");
#endif
}

// `value`, unknown to the compiler from here on: what the loop computes from it is computed each trip instead of once
// before the loop and kept in registers, which at 128 heads a workgroup cost more than the few VALU.
__device__ __forceinline__ int recompute_from(int value) {
#if defined(__HIP_DEVICE_COMPILE__)
  asm volatile("" : "+v"(value));
#endif
  return value;
}

// (a & b) | c in one v_and_or_b32, where the compiler folds it into two instructions and a third.
__device__ __forceinline__ uint32_t and_or(uint32_t a, uint32_t b, uint32_t c) {
#if defined(__HIP_DEVICE_COMPILE__)
  uint32_t result;
  asm("v_and_or_b32 %0, %1, %2, %3" : "=v"(result) : "v"(a), "v"(b), "v"(c));
  return result;
#else
  return (a & b) | c;
#endif
}

// v_perm_b32: byte i of the result is byte selector[i] of {high, low} (0-3: low's bytes, 4-7: high's).
__device__ __forceinline__ uint32_t select_bytes(uint32_t high, uint32_t low, uint32_t selector) {
  return __builtin_amdgcn_perm(high, low, selector);
}

// The low 16 bits of a and of b, as (a, b) in one word; the same for the high 16 bits.
__device__ __forceinline__ uint32_t pack_low_halves(uint32_t a, uint32_t b) { return select_bytes(b, a, 0x05040100u); }
__device__ __forceinline__ uint32_t pack_high_halves(uint32_t a, uint32_t b) { return select_bytes(b, a, 0x07060302u); }

// Two bf16 patterns from the high halves of two fp32 values (exact when the values are bf16-representable).
__device__ __forceinline__ uint32_t high_halves(float lo, float hi) {
  return pack_high_halves(__builtin_bit_cast(uint32_t, lo), __builtin_bit_cast(uint32_t, hi));
}

// Round-to-nearest-even fp32 -> bf16 pair, for finite values (a NaN may come out as another NaN or infinity).
__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const uint32_t a = __builtin_bit_cast(uint32_t, lo), b = __builtin_bit_cast(uint32_t, hi);
  return pack_high_halves(a + 0x7FFFu + ((a >> 16) & 1u), b + 0x7FFFu + ((b >> 16) & 1u));
}

// 8 bf16 patterns times 2, exactly (an infinity past the largest bf16).
__device__ __forceinline__ u32x4 doubled_bf16x8(u32x4 w) {
  u32x4 out;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const float lo = 2.f * __builtin_bit_cast(float, w[i] << 16),
                hi = 2.f * __builtin_bit_cast(float, w[i] & 0xFFFF0000u);
    out[i] = high_halves(lo, hi);
  }
  return out;
}

// Round-to-nearest, ties away from zero, fp32 -> bf16 pair for finite values: one add a value where
// pack_bf16x2 takes two. For the softmax weights and decode's keys, where it differs from round-to-nearest-even on
// exact ties only.
__device__ __forceinline__ uint32_t pack_bf16x2_ties_away(float lo, float hi) {
  return pack_high_halves(__builtin_bit_cast(uint32_t, lo) + 0x8000u, __builtin_bit_cast(uint32_t, hi) + 0x8000u);
}

}  // namespace flash_mla::gfx942
