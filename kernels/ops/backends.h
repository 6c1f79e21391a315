// Routes a call to the backend of its device. The GPU backend (sm90 under a CUDA torch, gfx942 under a ROCm
// torch) is compiled in only when setup.py built it, and then registered for the CUDA dispatch key. The test-only
// emulation build (FLASH_MLA_GFX942_EMULATION, tests/gfx942_emulation.py) runs the gfx942 kernels on CPU tensors.
#pragma once

#include <ATen/ATen.h>

#include "../common/params.h"
#include "../common/split_kv.h"

#if defined(FLASH_MLA_GFX942_EMULATION)
#include "../gfx942/gfx942_kernels.h"
namespace flash_mla {
namespace gpu = gfx942;
}
#else
#include "../cpu/cpu_kernels.h"
#if defined(FLASH_MLA_WITH_GPU)
#include <ATen/cuda/CUDAContext.h>
#if defined(FLASH_MLA_WITH_SM90)
#include "../sm90/sm90_kernels.h"
namespace flash_mla {
namespace gpu = sm90;
}
#elif defined(FLASH_MLA_WITH_GFX942)
#include "../gfx942/gfx942_kernels.h"
namespace flash_mla {
namespace gpu = gfx942;
}
#endif
#endif
#endif

namespace flash_mla::ops {

#if defined(FLASH_MLA_GFX942_EMULATION)
inline int gpu_compute_units() { return 304; }  // plan splits as on an MI300X
inline hipStream_t gpu_stream() { return nullptr; }
#elif defined(FLASH_MLA_WITH_GPU)
inline int gpu_compute_units() { return at::cuda::getCurrentDeviceProperties()->multiProcessorCount; }
inline auto gpu_stream() { return at::cuda::getCurrentCUDAStream().stream(); }
#endif

#if defined(FLASH_MLA_WITH_GPU) || defined(FLASH_MLA_GFX942_EMULATION)
// Split-KV buffers for rows x heads outputs over up to max_keys keys a row. Sized from shapes alone, so a call
// is the same set of allocations and launches whatever the tensors hold (CUDA/HIP-graph capturable).
struct GpuWorkspace {
  SplitKVWorkspace splits;
  at::Tensor out_accum, lse_accum;  // owners

  GpuWorkspace(int64_t rows, int64_t heads, int64_t max_keys, const at::Device& device) {
    splits.num_splits =
        choose_num_splits(rows * gpu::num_head_groups(heads), max_keys, gpu_compute_units(), gpu::kKeysPerTile);
    if (splits.num_splits > 1) {
      const auto options = at::TensorOptions().device(device).dtype(at::kFloat);
      out_accum = at::empty({splits.num_splits, rows, heads, kHeadDim}, options);
      lse_accum = at::empty({splits.num_splits, rows, heads}, options);
      splits.out_accum = out_accum.data_ptr<float>();
      splits.lse_accum = lse_accum.data_ptr<float>();
    }
  }
};
#endif

inline void run_sparse_attn_decode(const SparseDecodeParams& params, const at::Device& device) {
#if !defined(FLASH_MLA_GFX942_EMULATION)
  if (device.is_cpu()) return cpu::sparse_attn_decode(params);
#endif
#if defined(FLASH_MLA_WITH_GPU) || defined(FLASH_MLA_GFX942_EMULATION)
  int64_t max_keys = 0;
  for (int s = 0; s < params.num_sources; ++s) max_keys += params.sources[s].topk;
  const GpuWorkspace workspace(int64_t(params.batch) * params.seq_q, params.num_heads, max_keys, device);
  gpu::sparse_attn_decode(params, workspace.splits, gpu_stream());
#else
  TORCH_CHECK(false, "flash_mla.sparse_attn_decode: this build has no kernels for ", device);
#endif
}

inline void run_decode(const DecodeParams& params, const at::Device& device) {
#if !defined(FLASH_MLA_GFX942_EMULATION)
  if (device.is_cpu()) return cpu::decode(params);
#endif
#if defined(FLASH_MLA_WITH_GPU) || defined(FLASH_MLA_GFX942_EMULATION)
  // Ranges are device data: plan for the average row, T / B tokens.
  const int64_t mean_keys = params.batch > 0 ? (params.num_tokens + params.batch - 1) / params.batch : 0;
  const GpuWorkspace workspace(params.batch, params.num_heads, mean_keys, device);
  gpu::decode(params, workspace.splits, gpu_stream());
#else
  TORCH_CHECK(false, "flash_mla.decode: this build has no kernels for ", device);
#endif
}

}  // namespace flash_mla::ops
