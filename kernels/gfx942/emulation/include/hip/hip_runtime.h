// Test infrastructure, never part of the wheel: HIP and the AMDGPU builtins the gfx942 kernels use, for the host CPU,
// so the same kernel sources run on small problems where no AMD GPU exists. The emulation build (tests/
// gfx942_emulation.py) puts this folder first on its include path: the kernels' own #include <hip/hip_runtime.h>
// finds this file, and their __builtin_amdgcn_* calls find the functions below.
//
// A launch runs its workgroups one after another. Each work-item is a fiber (ucontext); fibers run round-robin,
// each until it reaches a workgroup barrier or a wave-wide operation. Lane l of wave w is work-item 64 w + l.
// LDS is `__shared__` = a function-local static, one copy, which is what one workgroup at a time needs.
// Wave-wide operations (ds_bpermute, DPP quad_perm, readfirstlane, ballot, MFMA) gather all 64 lanes' operands
// before any lane reads a result; the MFMA computes D = A B + C with the CDNA3 v_mfma_f32_16x16x16_bf16 lane
// layouts. v_cvt_pk_f32_fp8 decodes e4m3fnuz as gfx942 does (0x80 is NaN). Lanes that stop arriving at a barrier
// the others wait on (a divergent barrier or wave operation, a hang on hardware) make the launch throw; an
// unemulated builtin mode aborts. hipDeviceGetAttribute answers as an MI300X would (304 CUs), so splits are planned
// as on one.
#pragma once

#include <ucontext.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <stdexcept>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static thread_local

struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
typedef struct EmulatedStream* hipStream_t;
enum hipError_t { hipSuccess = 0 };
inline hipError_t hipGetLastError() { return hipSuccess; }
inline const char* hipGetErrorString(hipError_t) { return "no error"; }
// An MI300X, as far as the backend asks.
enum hipDeviceAttribute_t { hipDeviceAttributeMultiprocessorCount };
inline hipError_t hipDeviceGetAttribute(int* value, hipDeviceAttribute_t, int) {
  *value = 304;
  return hipSuccess;
}
struct hipDeviceProp_t {
  char gcnArchName[256];
};
inline hipError_t hipGetDeviceProperties(hipDeviceProp_t* properties, int) {
  std::strcpy(properties->gcnArchName, "gfx942:sramecc+:xnack-");
  return hipSuccess;
}

namespace gfx942_emulation {

constexpr int kWaveSize = 64;
typedef short bf16x4 __attribute__((vector_size(8)));
typedef float floatx4 __attribute__((vector_size(16)));

// All lanes of a group (a wave or the workgroup) arrive before any continues.
struct Rendezvous {
  int arrived = 0;
  uint64_t generation = 0;
};

class Workgroup {
 public:
  static constexpr size_t kStackBytes = 256 * 1024;

  Workgroup(dim3 block, std::function<void()> body) : size_(int(block.x * block.y * block.z)), body_(std::move(body)) {
    if (block.y != 1 || block.z != 1 || size_ % kWaveSize != 0)
      throw std::invalid_argument("gfx942 emulation: workgroups are 1-D and whole waves");
    fibers_.resize(size_);
    waves_.resize(size_ / kWaveSize);
    for (Fiber& fiber : fibers_) fiber.stack.reset(new char[kStackBytes]);
  }

  void run(dim3 index) {
    index_ = index;
    for (int t = 0; t < size_; ++t) {
      Fiber& fiber = fibers_[t];
      fiber.done = false;
      fiber.wave_ops = 0;
      getcontext(&fiber.context);
      fiber.context.uc_stack.ss_sp = fiber.stack.get();
      fiber.context.uc_stack.ss_size = kStackBytes;
      fiber.context.uc_link = &scheduler_;
      makecontext(&fiber.context, &Workgroup::fiber_main, 0);
    }
    Workgroup* const outer = current_;
    current_ = this;
    int running = size_;
    while (running > 0) {
      const uint64_t progress_before = progress_;
      for (int t = 0; t < size_; ++t) {
        if (fibers_[t].done) continue;
        thread_ = t;
        swapcontext(&scheduler_, &fibers_[t].context);
        if (fibers_[t].done) --running;
      }
      if (running > 0 && progress_ == progress_before) {
        current_ = outer;
        throw std::runtime_error("gfx942 emulation: lanes wait at a barrier or wave operation others never reach");
      }
    }
    current_ = outer;
  }

  static Workgroup& current() { return *current_; }
  int thread() const { return thread_; }
  int lane() const { return thread_ % kWaveSize; }
  dim3 index() const { return index_; }

  void workgroup_barrier() { arrive(barrier_, size_); }

  // Publishes this lane's bytes for a wave operation, then returns every lane's slot once all have published.
  // Two slot sets alternate: a lane can only publish again after all lanes have read the previous operation.
  const unsigned char* wave_exchange(const void* bytes, size_t size) {
    Wave& wave = waves_[thread_ / kWaveSize];
    Fiber& fiber = fibers_[thread_];
    unsigned char* slots = wave.slots[fiber.wave_ops % 2];
    ++fiber.wave_ops;
    std::memcpy(slots + lane() * kSlotBytes, bytes, size);
    arrive(wave.rendezvous, kWaveSize);
    return slots;
  }

  static constexpr size_t kSlotBytes = 16;

 private:
  struct Fiber {
    ucontext_t context;
    std::unique_ptr<char[]> stack;
    bool done = false;
    uint64_t wave_ops = 0;
  };
  struct Wave {
    Rendezvous rendezvous;
    unsigned char slots[2][kWaveSize * kSlotBytes];
  };

  static void fiber_main() {
    Workgroup& group = current();
    group.body_();
    group.fibers_[group.thread_].done = true;
    ++group.progress_;
  }

  void arrive(Rendezvous& rendezvous, int expected) {
    ++progress_;
    const uint64_t generation = rendezvous.generation;
    if (++rendezvous.arrived == expected) {
      rendezvous.arrived = 0;
      ++rendezvous.generation;
      return;
    }
    while (rendezvous.generation == generation) swapcontext(&fibers_[thread_].context, &scheduler_);
  }

  int size_;
  std::function<void()> body_;
  std::vector<Fiber> fibers_;
  std::vector<Wave> waves_;
  Rendezvous barrier_;
  ucontext_t scheduler_;
  dim3 index_;
  int thread_ = 0;
  uint64_t progress_ = 0;
  static inline thread_local Workgroup* current_ = nullptr;
};

inline void launch(dim3 grid, dim3 block, std::function<void()> body) {
  Workgroup group(block, std::move(body));
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x) group.run(dim3(x, y, z));
}

inline float bf16_to_float(short bits) {
  const uint32_t word = uint32_t(uint16_t(bits)) << 16;
  float value;
  std::memcpy(&value, &word, sizeof(value));
  return value;
}

// One e4m3fnuz byte (bias 8, 0x80 NaN, no negative zero, no infinities), exactly.
inline float fp8_e4m3fnuz_to_float(uint8_t byte) {
  if (byte == 0x80) return NAN;
  const int exponent = (byte >> 3) & 0xF, mantissa = byte & 0x7;
  const float magnitude =
      exponent == 0 ? std::ldexp(float(mantissa), -10) : std::ldexp(1.f + mantissa / 8.f, exponent - 8);
  return byte & 0x80 ? -magnitude : magnitude;
}

struct float2_result {
  float value[2];
  float operator[](int i) const { return value[i]; }
};

}  // namespace gfx942_emulation

// ---- The AMDGPU builtins the kernels use, under their own names. ----

namespace emu = ::gfx942_emulation;

inline int __builtin_amdgcn_workitem_id_x() { return emu::Workgroup::current().thread(); }
inline int __builtin_amdgcn_workgroup_id_x() { return int(emu::Workgroup::current().index().x); }
inline int __builtin_amdgcn_workgroup_id_y() { return int(emu::Workgroup::current().index().y); }
inline int __builtin_amdgcn_workgroup_id_z() { return int(emu::Workgroup::current().index().z); }

// v_readfirstlane_b32: the value of the wave's first active lane (all lanes are active at its uses).
inline int __builtin_amdgcn_readfirstlane(int value) {
  const unsigned char* slots = emu::Workgroup::current().wave_exchange(&value, sizeof(value));
  int first;
  std::memcpy(&first, slots, sizeof(first));
  return first;
}

// v_mov_b32 with DPP, quad_perm controls only (0x00..0xFF; full row and bank masks): lane 4 q + i takes lane
// 4 q + ((control >> 2 i) & 3).
inline int __builtin_amdgcn_mov_dpp(int value, int control, int row_mask, int bank_mask, bool) {
  if (control > 0xFF || row_mask != 0xF || bank_mask != 0xF) {
    std::fprintf(stderr, "gfx942 emulation: only full-mask DPP quad_perm is emulated\n");
    std::abort();
  }
  const unsigned char* slots = emu::Workgroup::current().wave_exchange(&value, sizeof(value));
  const int lane = emu::Workgroup::current().lane();
  const int source = lane / 4 * 4 + ((control >> (2 * (lane % 4))) & 3);
  int result;
  std::memcpy(&result, slots + source * emu::Workgroup::kSlotBytes, sizeof(result));
  return result;
}

// v_mbcnt_lo/hi: acc + the number of set mask bits below this lane in the low / high 32 lanes.
inline uint32_t __builtin_amdgcn_mbcnt_lo(uint32_t mask, uint32_t acc) {
  const int lane = emu::Workgroup::current().lane();
  const uint32_t below = lane >= 32 ? ~0u : (1u << lane) - 1u;
  return acc + uint32_t(__builtin_popcount(mask & below));
}
inline uint32_t __builtin_amdgcn_mbcnt_hi(uint32_t mask, uint32_t acc) {
  const int lane = emu::Workgroup::current().lane();
  const uint32_t below = lane < 32 ? 0u : (lane == 63 ? 0x7FFFFFFFu : (1u << (lane - 32)) - 1u);
  return acc + uint32_t(__builtin_popcount(mask & below));
}

inline void __builtin_amdgcn_fence(int, const char*) {}  // one workgroup runs at a time: LDS is always coherent
inline void __builtin_amdgcn_s_barrier() { emu::Workgroup::current().workgroup_barrier(); }

// ds_bpermute_b32: the value of lane (byte_address / 4) % 64.
inline int __builtin_amdgcn_ds_bpermute(int byte_address, int value) {
  const unsigned char* slots = emu::Workgroup::current().wave_exchange(&value, sizeof(value));
  int result;
  std::memcpy(&result, slots + ((unsigned(byte_address) / 4) % emu::kWaveSize) * emu::Workgroup::kSlotBytes,
              sizeof(result));
  return result;
}

inline uint64_t __builtin_amdgcn_ballot_w64(bool predicate) {
  const int value = predicate;
  const unsigned char* slots = emu::Workgroup::current().wave_exchange(&value, sizeof(value));
  uint64_t mask = 0;
  for (int lane = 0; lane < emu::kWaveSize; ++lane) {
    int bit;
    std::memcpy(&bit, slots + lane * emu::Workgroup::kSlotBytes, sizeof(bit));
    mask |= uint64_t(bit != 0) << lane;
  }
  return mask;
}

// v_perm_b32 with byte selectors 0-7: byte i of the result is byte selector[i] of {high, low}.
inline uint32_t __builtin_amdgcn_perm(uint32_t high, uint32_t low, uint32_t selector) {
  const uint64_t bytes = uint64_t(high) << 32 | low;
  uint32_t result = 0;
  for (int i = 0; i < 4; ++i) {
    const uint32_t select = (selector >> (8 * i)) & 0xFF;
    if (select > 7) {
      std::fprintf(stderr, "gfx942 emulation: v_perm_b32 selectors above 7 are not emulated\n");
      std::abort();
    }
    result |= uint32_t((bytes >> (8 * select)) & 0xFF) << (8 * i);
  }
  return result;
}

inline float __builtin_amdgcn_exp2f(float x) { return std::exp2(x); }  // v_exp_f32
inline float __builtin_amdgcn_logf(float x) { return std::log2(x); }   // v_log_f32 is log2

// v_mfma_f32_16x16x16_bf16 (cbsz, abid, blgp = 0): A[i][k] in lane i + 16 (k / 4) element k % 4, B[k][j] in lane
// j + 16 (k / 4) element k % 4, C and D[i][j] in lane j + 16 (i / 4) element i % 4. Products are exact in fp32;
// the sum is taken in double and rounded once.
inline emu::floatx4 __builtin_amdgcn_mfma_f32_16x16x16bf16_1k(emu::bf16x4 a, emu::bf16x4 b, emu::floatx4 c, int cbsz,
                                                              int abid, int blgp) {
  if (cbsz != 0 || abid != 0 || blgp != 0) {
    std::fprintf(stderr, "gfx942 emulation: MFMA broadcast modes are not emulated\n");
    std::abort();
  }
  struct Operands {
    emu::bf16x4 a, b;
  } mine = {a, b};
  static_assert(sizeof(Operands) == emu::Workgroup::kSlotBytes, "one slot per lane");
  const unsigned char* slots = emu::Workgroup::current().wave_exchange(&mine, sizeof(mine));
  auto operand = [&](int lane) {
    Operands o;
    std::memcpy(&o, slots + lane * emu::Workgroup::kSlotBytes, sizeof(o));
    return o;
  };
  const int lane = emu::Workgroup::current().lane();
  const int j = lane % 16;
  emu::floatx4 d;
  for (int e = 0; e < 4; ++e) {
    const int i = 4 * (lane / 16) + e;
    double sum = c[e];
    for (int k = 0; k < 16; ++k) {
      const double a_ik = emu::bf16_to_float(operand(i + 16 * (k / 4)).a[k % 4]);
      const double b_kj = emu::bf16_to_float(operand(j + 16 * (k / 4)).b[k % 4]);
      sum += a_ik * b_kj;
    }
    d[e] = float(sum);
  }
  return d;
}

// v_cvt_pk_f32_fp8: bytes 0, 1 (high_word false) or 2, 3 (true) of src as e4m3fnuz.
inline emu::float2_result __builtin_amdgcn_cvt_pk_f32_fp8(int src, bool high_word) {
  const uint32_t bytes = uint32_t(src) >> (high_word ? 16 : 0);
  return {{emu::fp8_e4m3fnuz_to_float(uint8_t(bytes)), emu::fp8_e4m3fnuz_to_float(uint8_t(bytes >> 8))}};
}

#define hipLaunchKernelGGL(kernel, grid, block, shared_bytes, stream, ...) \
  ::emu::launch(grid, block, [&] { kernel(__VA_ARGS__); })
