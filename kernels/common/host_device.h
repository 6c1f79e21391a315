// Qualifiers that let one inline function serve the CPU, CUDA and HIP backends. A compiler of device code (nvcc, or
// clang compiling HIP) defines __host__ and __device__ before the first line of a source; a plain C++ compiler does
// not. Asking for them, rather than for a CUDA-only macro that torch's hipify would rename, keeps this file (and
// every file that includes it) out of hipify's reach, and needs no HIP header included first.
#pragma once

#if defined(__host__) && defined(__device__)
#define FMLA_HOST_DEVICE __host__ __device__ inline __attribute__((always_inline))
#else
#define FMLA_HOST_DEVICE inline
#endif
