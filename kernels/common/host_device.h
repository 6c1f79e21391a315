// Qualifiers that let one inline function serve the CPU, CUDA and HIP backends.
#pragma once

#if defined(__CUDACC__)
#define FMLA_HOST_DEVICE __host__ __device__ __forceinline__
#elif defined(__HIPCC__)
#define FMLA_HOST_DEVICE __host__ __device__ inline __attribute__((always_inline))
#else
#define FMLA_HOST_DEVICE inline
#endif
