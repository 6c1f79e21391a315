// The gfx942 backend's sources as one host C++ translation unit for the emulation build, whose include path puts
// include/hip/hip_runtime.h (HIP and the AMDGPU builtins for the host CPU) before any real HIP header.
#include "../backend.hip"
#include "../combine.hip"
#include "../decode.hip"
#include "../sparse_attn_decode.hip"
